"""The inverse deformation: (latent, deformed position) -> consensus position, as in the paper.

The network is a :class:`~dynamight_core.models.decoder.DisplacementDecoder` used the other
way round: it takes a deformed position ``y`` and a latent ``z`` and returns the residual
``r(z, y)``; the consensus position is ``y + r(z, y)`` (the paper's residual connection).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dynamight_core.io.checkpoint import read_model_file, write_model_file
from dynamight_core.models.decoder import DisplacementDecoder

INVERSE_KIND = "dynamight-inverse-deformation"


def build_inverse(
    latent_dim: int, box_px: int, pe_frequencies: int, width: int, layers: int
) -> DisplacementDecoder:
    """A new inverse network whose residual starts at zero (the identity map)."""
    return DisplacementDecoder(latent_dim, box_px, pe_frequencies, width, layers)


def describe_inverse(net: DisplacementDecoder, box_px: int) -> dict[str, Any]:
    """Constructor settings of an inverse network (JSON-like)."""
    return {
        "latent_dim": net.latent_layer.in_features,
        "box_px": box_px,
        "pe_frequencies": int(net.frequencies.shape[0]),
        "width": net.output.in_features,
        "layers": len(net.hidden),
    }


def save_inverse(
    path: str | Path, net: DisplacementDecoder, box_px: int, extra: dict[str, Any]
) -> None:
    """Write the network, its settings, the version and ``extra`` atomically."""
    write_model_file(path, INVERSE_KIND, describe_inverse(net, box_px), net, extra)


def load_inverse(
    path: str | Path, device: torch.device | None = None
) -> tuple[DisplacementDecoder, dict[str, Any]]:
    """Read a network written by :func:`save_inverse` and its ``extra`` record."""
    payload = read_model_file(path, INVERSE_KIND)
    config = payload["config"]
    net = build_inverse(
        config["latent_dim"],
        config["box_px"],
        config["pe_frequencies"],
        config["width"],
        config["layers"],
    )
    net.load_state_dict(payload["state_dict"])
    return net.to(device or torch.device("cpu")), payload["extra"]
