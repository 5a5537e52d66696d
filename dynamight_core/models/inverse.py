"""The inverse deformation: (latent, deformed position) -> consensus position, as in the paper.

The network is a displacement decoder (:mod:`~dynamight_core.models.decoders`, the same kind
as the forward model's) used the other way round: it takes a deformed position ``y`` and a
latent ``z`` and returns the residual ``r(z, y)``; the consensus position is ``y + r(z, y)``
(the paper's residual connection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dynamight_core.io.checkpoint import read_model_file, write_model_file
from dynamight_core.models.decoders import (
    Decoder,
    DecoderShape,
    build_decoder,
    decoder_kind,
    decoder_latent_dim,
    describe_decoder,
)

INVERSE_KIND = "dynamight-inverse-deformation"


def build_inverse(
    latent_dim: int,
    box_px: int,
    pe_frequencies: int,
    width: int,
    layers: int,
    kind: str = "mlp",
    n_basis: int = 4,
) -> Decoder:
    """A new inverse network of decoder ``kind`` whose residual starts at zero (the identity)."""
    return build_decoder(
        DecoderShape(kind, latent_dim, box_px, pe_frequencies, width, layers, n_basis=n_basis)
    )


def describe_inverse(net: Decoder, box_px: int) -> dict[str, Any]:
    """Constructor settings of an inverse network (JSON-like)."""
    record = describe_decoder(net, box_px)
    return {
        "kind": decoder_kind(net),
        "latent_dim": decoder_latent_dim(net),
        "box_px": box_px,
        "pe_frequencies": record["n_frequencies"],
        "width": record["width"],
        "layers": record["n_layers"],
        "n_basis": record.get("n_basis", 4),
    }


def save_inverse(path: str | Path, net: Decoder, box_px: int, extra: dict[str, Any]) -> None:
    """Write the network, its settings, the version and ``extra`` atomically."""
    write_model_file(path, INVERSE_KIND, describe_inverse(net, box_px), net, extra)


def load_inverse(
    path: str | Path, device: torch.device | None = None
) -> tuple[Decoder, dict[str, Any]]:
    """Read a network written by :func:`save_inverse` and its ``extra`` record."""
    payload = read_model_file(path, INVERSE_KIND)
    config = payload["config"]
    net = build_inverse(
        config["latent_dim"],
        config["box_px"],
        config["pe_frequencies"],
        config["width"],
        config["layers"],
        config.get("kind", "mlp"),  # networks written before vae.decoder were mlp
        config.get("n_basis", 4),
    )
    net.load_state_dict(payload["state_dict"])
    return net.to(device or torch.device("cpu")), payload["extra"]
