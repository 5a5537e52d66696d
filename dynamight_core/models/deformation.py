"""A half set's deformation model: consensus Gaussians, encoder and displacement decoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dynamight_core.config_schema import default_of
from dynamight_core.io.checkpoint import read_model_file, write_model_file
from dynamight_core.models.decoders import (
    Decoder,
    DecoderShape,
    build_decoder,
    decoder_from_description,
    describe_decoder,
)
from dynamight_core.models.encoder import ImageEncoder
from dynamight_core.models.gaussians import GaussianModel

MODEL_KIND = "dynamight-deformation-model"


@dataclass(frozen=True)
class VaeArchitecture:
    """Shapes of the encoder and the decoder (config section ``vae``).

    Attributes
    ----------
    latent_dim
        Dimension L of the latent space.
    encoder_px
        Largest encoder input image in pixels (the image is Fourier-cropped to it).
    decoder
        The displacement decoder: ``basis`` or ``mlp`` (:mod:`~dynamight_core.models.decoders`).
    decoder_basis
        Basis displacements per Gaussian of the ``basis`` decoder.
    decoder_layers, decoder_width
        Hidden layers of the displacement decoder and units per layer.
    pe_frequencies
        Frequencies of the decoder's positional encoding.
    decoder_precision
        Arithmetic of the decoder's layers (see
        :class:`~dynamight_core.models.decoder.DisplacementDecoder`).
    """

    latent_dim: int = default_of("vae", "latent_dim")
    encoder_px: int = default_of("vae", "encoder_px")
    decoder: str = default_of("vae", "decoder")
    decoder_basis: int = default_of("vae", "decoder_basis")
    decoder_layers: int = default_of("vae", "decoder_layers")
    decoder_width: int = default_of("vae", "decoder_width")
    pe_frequencies: int = default_of("vae", "pe_frequencies")
    decoder_precision: str = default_of("vae", "decoder_precision")


class DeformationModel(nn.Module):
    """Encoder-decoder pair over a consensus Gaussian model.

    Parameters
    ----------
    consensus
        The half set's (warmed-up) Gaussian model; its positions are the consensus.
    encoder
        Image -> latent distribution.
    decoder
        (latent, consensus position) -> displacement.
    """

    def __init__(self, consensus: GaussianModel, encoder: ImageEncoder, decoder: Decoder) -> None:
        super().__init__()
        self.consensus = consensus
        self.encoder = encoder
        self.decoder = decoder

    def displacements_a(self, z: torch.Tensor) -> torch.Tensor:
        """`(B, N, 3)` displacements (Å) of the consensus Gaussians for latents `(B, L)`."""
        return self.decoder(z, self.consensus.positions) * self.consensus.box_a

    def deformed_positions_a(self, z: torch.Tensor) -> torch.Tensor:
        """`(B, N, 3)` deformed Gaussian centres (Å) for latents `(B, L)`."""
        return self.consensus.positions_a()[None] + self.displacements_a(z)

    def describe(self) -> dict[str, Any]:
        """Constructor settings of the three parts (JSON-like)."""
        return {
            "consensus": self.consensus.describe(),
            "encoder": {
                "input_px": self.encoder.input_px,
                "latent_dim": self.encoder.latent_dim,
                "hidden": list(self.encoder.hidden_sizes),
            },
            "decoder": describe_decoder(self.decoder, self.consensus.box_px),
        }

    @classmethod
    def from_description(cls, config: dict[str, Any]) -> DeformationModel:
        """An empty model with the shapes of ``config`` (see :meth:`describe`)."""
        consensus_config = config["consensus"]
        consensus = GaussianModel.empty(
            consensus_config["n_gaussians"],
            consensus_config["n_width_classes"],
            consensus_config["box_px"],
            consensus_config["pixel_size_a"],
        )
        encoder_config = config["encoder"]
        first, second = encoder_config["hidden"]
        encoder = ImageEncoder(
            encoder_config["input_px"], encoder_config["latent_dim"], 1.0, (first, second)
        )
        decoder = decoder_from_description(config["decoder"])
        return cls(consensus, encoder, decoder)


def particle_radius_a(consensus: GaussianModel) -> float:
    """Radius (Å) about the box centre that holds the consensus Gaussians and their widths."""
    with torch.no_grad():
        reach = consensus.positions_a().norm(dim=1).max() + 2 * consensus.widths_a().max()
    return float(reach)


def build_deformation_model(
    consensus: GaussianModel, architecture: VaeArchitecture, encoder_px: int
) -> DeformationModel:
    """A new model over ``consensus``, its encoder reading ``encoder_px`` images.

    ``encoder_px`` is the encoder's input size on the training grid (at most
    ``architecture.encoder_px``); the encoder masks a disc of the particle's radius.
    """
    encoder_pixel_a = consensus.box_a / encoder_px
    encoder = ImageEncoder(
        encoder_px, architecture.latent_dim, particle_radius_a(consensus) / encoder_pixel_a
    )
    decoder = build_decoder(
        DecoderShape(
            kind=architecture.decoder,
            latent_dim=architecture.latent_dim,
            box_px=consensus.box_px,
            n_frequencies=architecture.pe_frequencies,
            width=architecture.decoder_width,
            n_layers=architecture.decoder_layers,
            precision=architecture.decoder_precision,
            n_basis=architecture.decoder_basis,
        )
    )
    return DeformationModel(consensus, encoder, decoder)


def save_deformation_model(
    path: str | Path, model: DeformationModel, extra: dict[str, Any]
) -> None:
    """Write state dict, settings, version and ``extra`` atomically (``weights_only``-safe)."""
    write_model_file(path, MODEL_KIND, model.describe(), model, extra)


def load_deformation_model(
    path: str | Path, device: torch.device | None = None
) -> tuple[DeformationModel, dict[str, Any]]:
    """Read a model written by :func:`save_deformation_model`."""
    payload = read_model_file(path, MODEL_KIND)
    model = DeformationModel.from_description(payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device or torch.device("cpu")), payload["extra"]


@torch.no_grad()
def displacement_rms_a(
    model: DeformationModel, latents: np.ndarray, batch: int = 256
) -> np.ndarray:
    """`(N,)` each Gaussian's RMS displacement (Å) about its mean over the given latents."""
    device = model.consensus.positions.device
    total = None
    square = None
    for start in range(0, len(latents), batch):
        z = torch.as_tensor(latents[start : start + batch], dtype=torch.float32, device=device)
        shifts = model.displacements_a(z).double()
        total = shifts.sum(0) if total is None else total + shifts.sum(0)
        square = (shifts**2).sum(0) if square is None else square + (shifts**2).sum(0)
    assert total is not None and square is not None
    count = len(latents)
    variance = (square / count - (total / count) ** 2).sum(-1).clamp(min=0.0)
    return variance.sqrt().cpu().numpy()
