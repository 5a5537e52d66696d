"""The original DynaMight's projection method, re-implemented for comparison only.

Bilinear splatting of the Gaussian centres onto the image grid, an FFT, and
multiplication by the Gaussian's transform, with no correction for the splatting kernel.
(Its ``FourierImageSmoother`` builds the kernel from a quantised real-space grid; here the
exact analytic transform is used, which can only make the baseline more accurate.)
"""

from __future__ import annotations

import math

import torch

from dynamight_core.geometry.rotations import project_points


def bilinear_fft_projections(
    positions_a: torch.Tensor,
    masses: torch.Tensor,
    widths_a: torch.Tensor,
    rotations: torch.Tensor,
    shifts_a: torch.Tensor,
    box_px: int,
    pixel_size_a: float,
) -> torch.Tensor:
    """`(B, D, D//2+1)` image transforms; arguments as ``render_projections`` (one channel)."""
    batch = rotations.shape[0]
    points = (project_points(positions_a, rotations) + shifts_a[:, None, :]) / pixel_size_a
    coords = torch.remainder(points + box_px / 2, box_px)
    floor = torch.floor(coords)
    frac = coords - floor
    ix, iy = floor[..., 0].long(), floor[..., 1].long()
    weight = masses[:, 0].expand(batch, -1)
    grid = torch.zeros(batch, box_px * box_px, dtype=positions_a.dtype)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        wx = frac[..., 0] if dx else 1 - frac[..., 0]
        wy = frac[..., 1] if dy else 1 - frac[..., 1]
        index = ((iy + dy) % box_px) * box_px + (ix + dx) % box_px
        grid = grid.scatter_add(1, index, weight * wx * wy)
    spectrum = torch.fft.rfft2(grid.view(batch, box_px, box_px))
    ky = torch.fft.fftfreq(box_px)[:, None]
    kx = torch.fft.rfftfreq(box_px)[None, :]
    sigma = widths_a[0] / pixel_size_a
    return spectrum * torch.exp(-2 * math.pi**2 * sigma**2 * (kx**2 + ky**2))
