"""Exact (dense, float64) Gaussian rendering: the reference the fast renderer is checked against.

Every pixel or voxel is evaluated analytically, separably per axis. The cost is
``O(N D^2)`` per image and ``O(N D^3)`` per volume, so this is for tests, benchmarks and
small simulations only. Values are point samples at pixel centres, without periodic wrap.
"""

from __future__ import annotations

import math

import torch

from dynamight_core.geometry.rotations import project_points


def _axis_profiles(centres_px: torch.Tensor, widths_px: torch.Tensor, box_px: int) -> torch.Tensor:
    """`(..., N, C, D)` values ``exp(-(x - c)^2 / (2 s^2))`` along one axis."""
    axis = torch.arange(box_px, dtype=torch.float64, device=centres_px.device) - box_px // 2
    diff = axis - centres_px[..., None, None]
    return torch.exp(-(diff**2) / (2.0 * widths_px[:, None] ** 2))


def exact_projections(
    positions_a: torch.Tensor,
    masses: torch.Tensor,
    widths_a: torch.Tensor,
    rotations: torch.Tensor,
    shifts_a: torch.Tensor,
    box_px: int,
    pixel_size_a: float,
) -> torch.Tensor:
    """Exact projections (no CTF) with the same arguments as ``render_projections``.

    Returns
    -------
    torch.Tensor
        `(B, D, D)` float64 images, box centre at index ``D//2``.
    """
    points_px = (
        project_points(positions_a.double(), rotations.double()) + shifts_a.double()[:, None, :]
    ) / pixel_size_a
    widths_px = widths_a.double() / pixel_size_a
    batch = rotations.shape[0]
    weights = masses.double().expand(batch, *masses.shape[-2:])
    peak_2d = weights / (2.0 * math.pi * widths_px**2)
    profile_x = _axis_profiles(points_px[..., 0], widths_px, box_px)
    profile_y = _axis_profiles(points_px[..., 1], widths_px, box_px)
    return torch.einsum("bncy,bncx,bnc->byx", profile_y, profile_x, peak_2d)


def exact_volume(
    positions_a: torch.Tensor,
    masses: torch.Tensor,
    widths_a: torch.Tensor,
    box_px: int,
    pixel_size_a: float,
) -> torch.Tensor:
    """Exact volume with the same arguments as ``render_volume`` (single volume).

    Returns
    -------
    torch.Tensor
        `(D, D, D)` float64 volume indexed (z, y, x).
    """
    points_px = positions_a.double() / pixel_size_a
    widths_px = widths_a.double() / pixel_size_a
    peak_3d = masses.double() / ((2.0 * math.pi) ** 1.5 * widths_px**3)
    profile_x = _axis_profiles(points_px[:, 0], widths_px, box_px)
    profile_y = _axis_profiles(points_px[:, 1], widths_px, box_px)
    profile_z = _axis_profiles(points_px[:, 2], widths_px, box_px)
    plane_zy = torch.einsum("ncz,ncy,nc->nczy", profile_z, profile_y, peak_3d)
    return torch.einsum("nczy,ncx->zyx", plane_zy, profile_x)
