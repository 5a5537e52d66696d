"""The Gaussian pseudo-atom model of a particle.

Gaussian j has a centre ``c_j`` and a mass ``m_j > 0``; its radial profile is a mixture
of C shared widths ``sigma_c`` with per-Gaussian weights ``softmax(logits_j)``, so each
Gaussian has its own effective width at the cost of C render channels. Parameters are
stored in scale-free units so that one learning rate fits every box size:

* positions as fractions of the box edge (``c / (D p)``);
* masses as their logarithm;
* widths as ``log(sigma_c / p - 1)`` (widths stay at or above one pixel, where the renderer's
  accuracy is documented).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dynamight_core.io.checkpoint import read_model_file, write_model_file
from dynamight_core.physics.render import render_projections, render_volume

MODEL_KIND = "dynamight-gaussian-model"


class GaussianModel(nn.Module):
    """Positions, masses and widths of N Gaussians.

    Parameters
    ----------
    positions_a
        `(N, 3)` initial centres (x, y, z) in Å relative to the box centre.
    masses
        `(N,)` initial masses (voxel units), positive.
    widths_a
        `(C,)` initial class widths in Å (each above one pixel; they never go below it).
    box_px, pixel_size_a
        Geometry of the maps and images the model renders.
    class_logits
        Optional `(N, C)` initial class logits (zeros: equal mixture).
    """

    def __init__(
        self,
        positions_a: torch.Tensor,
        masses: torch.Tensor,
        widths_a: torch.Tensor,
        box_px: int,
        pixel_size_a: float,
        class_logits: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.box_px = int(box_px)
        self.pixel_size_a = float(pixel_size_a)
        box_a = self.box_px * self.pixel_size_a
        n, n_classes = positions_a.shape[0], widths_a.shape[0]
        if (widths_a <= self.pixel_size_a).any():
            raise ValueError("Gaussian widths must exceed one pixel")
        self.positions = nn.Parameter(positions_a.float() / box_a)
        self.log_masses = nn.Parameter(torch.log(masses.float().clamp(min=1e-30)))
        self.raw_widths = nn.Parameter(torch.log(widths_a.float() / self.pixel_size_a - 1.0))
        logits = class_logits if class_logits is not None else torch.zeros(n, n_classes)
        self.class_logits = nn.Parameter(logits.float())

    @property
    def n_gaussians(self) -> int:
        """Number of Gaussians N."""
        return int(self.positions.shape[0])

    @property
    def box_a(self) -> float:
        """Box edge in Å."""
        return self.box_px * self.pixel_size_a

    def positions_a(self) -> torch.Tensor:
        """`(N, 3)` centres in Å."""
        return self.positions * self.box_a

    def widths_a(self) -> torch.Tensor:
        """`(C,)` class widths in Å."""
        return (1.0 + torch.exp(self.raw_widths)) * self.pixel_size_a

    def channel_masses(self) -> torch.Tensor:
        """`(N, C)` mass of each Gaussian in each width class."""
        return torch.exp(self.log_masses)[:, None] * torch.softmax(self.class_logits, dim=1)

    def effective_widths_a(self) -> torch.Tensor:
        """`(N,)` root-mean-square width of each Gaussian's mixture (Å)."""
        weights = torch.softmax(self.class_logits, dim=1)
        return torch.sqrt((weights * self.widths_a() ** 2).sum(dim=1))

    def volume(
        self, positions_a: torch.Tensor | None = None, oversampling: int = 2
    ) -> torch.Tensor:
        """`(D, D, D)` rendered map (or `(B, D, D, D)` for per-state positions)."""
        positions = self.positions_a() if positions_a is None else positions_a
        return render_volume(
            positions,
            self.channel_masses(),
            self.widths_a(),
            self.box_px,
            self.pixel_size_a,
            oversampling=oversampling,
        )

    def projections(
        self,
        rotations: torch.Tensor,
        shifts_a: torch.Tensor,
        ctf: torch.Tensor | None = None,
        positions_a: torch.Tensor | None = None,
        oversampling: int = 2,
    ) -> torch.Tensor:
        """`(B, D, D//2+1)` CTF-modulated image transforms (see ``render_projections``)."""
        positions = self.positions_a() if positions_a is None else positions_a
        return render_projections(
            positions,
            self.channel_masses(),
            self.widths_a(),
            rotations,
            shifts_a,
            self.box_px,
            self.pixel_size_a,
            ctf=ctf,
            oversampling=oversampling,
        )

    def describe(self) -> dict[str, Any]:
        """Constructor settings (JSON-like), stored with the state dict."""
        return {
            "n_gaussians": self.n_gaussians,
            "n_width_classes": int(self.raw_widths.shape[0]),
            "box_px": self.box_px,
            "pixel_size_a": self.pixel_size_a,
        }

    @classmethod
    def empty(
        cls, n_gaussians: int, n_width_classes: int, box_px: int, pixel_size_a: float
    ) -> GaussianModel:
        """A model of the right shape, to be filled by ``load_state_dict``."""
        return cls(
            torch.zeros(n_gaussians, 3),
            torch.ones(n_gaussians),
            torch.full((n_width_classes,), 2.0 * pixel_size_a),
            box_px,
            pixel_size_a,
        )


def save_gaussian_model(path: str | Path, model: GaussianModel, extra: dict[str, Any]) -> None:
    """Write the model (state dict, settings, version, ``extra`` record) atomically."""
    write_model_file(path, MODEL_KIND, model.describe(), model, extra)


def load_gaussian_model(
    path: str | Path, device: torch.device | None = None
) -> tuple[GaussianModel, dict[str, Any]]:
    """Read a model written by :func:`save_gaussian_model` (``weights_only=True``)."""
    payload = read_model_file(path, MODEL_KIND)
    config = payload["config"]
    model = GaussianModel.empty(
        config["n_gaussians"], config["n_width_classes"], config["box_px"], config["pixel_size_a"]
    )
    model.load_state_dict(payload["state_dict"])
    return model.to(device or torch.device("cpu")), payload["extra"]
