"""The displacement decoders by name (``vae.decoder``), their settings and model-file records.

* ``mlp``: the original DynaMight's design, an MLP evaluated for every Gaussian of every
  particle (:class:`~dynamight_core.models.decoder.DisplacementDecoder`), the reference;
* ``basis``: a positional network giving ``K`` basis displacements per Gaussian once per
  step, times ``K`` coefficients per particle
  (:class:`~dynamight_core.models.basis_decoder.BasisDecoder`).

Both take `(B, L)` latents and `(N, 3)` or `(B, N, 3)` positions (box units) and return
`(B, N, 3)` displacements (box units); everything downstream (deformation error, latents,
the inverse, deformed backprojection, explore) calls them the same way, and which one a
model uses is read from its file (:func:`describe_decoder`, :func:`decoder_from_description`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dynamight_core.config_schema import default_of
from dynamight_core.models.basis_decoder import BasisDecoder
from dynamight_core.models.decoder import DisplacementDecoder

Decoder = DisplacementDecoder | BasisDecoder
DECODERS = ("mlp", "basis")


@dataclass(frozen=True)
class DecoderShape:
    """What a decoder is built from (the ``vae`` section's decoder settings).

    Attributes
    ----------
    kind
        ``mlp`` or ``basis``.
    latent_dim, box_px
        Latent dimension L and box size D (the encoding's highest frequency is ``D/2``).
    n_frequencies, width, n_layers
        Positional encoding frequencies, hidden units and hidden layers (the MLP's, or the
        basis decoder's positional network's).
    precision
        ``mlp`` only: ``float32`` or ``bfloat16`` hidden layers.
    n_basis
        ``basis`` only: basis displacements K per Gaussian.
    """

    kind: str
    latent_dim: int
    box_px: int
    n_frequencies: int = default_of("vae", "pe_frequencies")
    width: int = default_of("vae", "decoder_width")
    n_layers: int = default_of("vae", "decoder_layers")
    precision: str = default_of("vae", "decoder_precision")
    n_basis: int = default_of("vae", "decoder_basis")


def build_decoder(shape: DecoderShape) -> Decoder:
    """A new decoder of ``shape``, whose displacements start at zero."""
    if shape.kind == "mlp":
        return DisplacementDecoder(
            shape.latent_dim,
            shape.box_px,
            shape.n_frequencies,
            shape.width,
            shape.n_layers,
            shape.precision,
        )
    if shape.kind == "basis":
        return BasisDecoder(
            shape.latent_dim,
            shape.box_px,
            shape.n_frequencies,
            shape.width,
            shape.n_layers,
            shape.n_basis,
        )
    raise ValueError(f"vae.decoder: expected one of {DECODERS}, got {shape.kind!r}")


def decoder_kind(decoder: Decoder) -> str:
    """``mlp`` or ``basis``."""
    return "basis" if isinstance(decoder, BasisDecoder) else "mlp"


def describe_decoder(decoder: Decoder, box_px: int) -> dict[str, Any]:
    """The constructor settings of ``decoder`` (JSON-like; :func:`decoder_from_description`)."""
    record: dict[str, Any] = {
        "kind": decoder_kind(decoder),
        "latent_dim": decoder_latent_dim(decoder),
        "n_frequencies": int(decoder.frequencies.shape[0]),
        "box_px": box_px,
        "precision": decoder.precision,
    }
    if isinstance(decoder, BasisDecoder):
        record.update(width=decoder.width, n_layers=decoder.n_layers, n_basis=decoder.n_basis)
    else:
        record.update(width=decoder.output.in_features, n_layers=len(decoder.hidden))
    return record


def decoder_from_description(config: dict[str, Any]) -> Decoder:
    """An empty decoder of the settings :func:`describe_decoder` wrote.

    Records written before ``vae.decoder`` existed have no ``kind``: they are ``mlp``.
    """
    return build_decoder(
        DecoderShape(
            kind=config.get("kind", "mlp"),
            latent_dim=config["latent_dim"],
            box_px=config["box_px"],
            n_frequencies=config["n_frequencies"],
            width=config["width"],
            n_layers=config["n_layers"],
            precision=config.get("precision", "float32"),
            n_basis=config.get("n_basis", default_of("vae", "decoder_basis")),
        )
    )


def decoder_latent_dim(decoder: Decoder) -> int:
    """The latent dimension L the decoder reads."""
    if isinstance(decoder, BasisDecoder):
        return decoder.latent_dim
    return decoder.latent_layer.in_features
