"""Differentiable renderer of isotropic 3D Gaussians into projections and volumes.

Model: Gaussian j has position ``c_j`` (Å, relative to the box centre), and in each width
channel c a mass ``m_jc`` (integrated density in voxel units) with a shared width
``sigma_c`` (Å). Its density is ``m / ((2 pi)^{3/2} s^3) exp(-|r - c|^2 / (2 s^2))`` with
``s = sigma / pixel_size``; the projection (sum along z in voxel units) keeps the mass.

Method, chosen by measurement (``benchmarks/bench_render.py``): the points are spread onto
an (optionally oversampled) grid with a cubic B-spline kernel, transformed with an rfft,
divided by the kernel's transform (``sinc^4``) to undo the spreading, cropped to the
output band, and multiplied by the Gaussians' analytic transform
``m exp(-2 pi^2 s^2 |k|^2)``. The CTF is applied in the same Fourier pass. Against an
exact float64 evaluation, with the default ``oversampling=2``, the relative L2 error at
1.5 px widths is about 1.5e-5 for images and 4e-5 for volumes, and below 1e-3 for the
gradients with respect to positions, masses, widths and shifts (the position gradient is
the worst, ~9e-4; ``oversampling=3`` brings it to ~3e-4). At 1 px widths the image error is
~2e-3, most of it the part of a 1 px Gaussian's spectrum beyond Nyquist, which a
band-limited image cannot hold. ``oversampling=1`` is ~25% faster, with 4e-4 image error
and 1e-2 gradient error at 1.5 px.
"""

from __future__ import annotations

import math

import torch

from dynamight_core.geometry.fourier import rfft_frequencies_2d, rfft_frequencies_3d
from dynamight_core.geometry.rotations import project_points
from dynamight_core.physics.spread import bspline_transform, spread_bspline


def _band_rows(box_px: int, grid_px: int, device: torch.device) -> torch.Tensor:
    """Indices of an oversampled grid's rows that hold the frequencies of a ``box_px`` grid."""
    freq_index = torch.fft.fftfreq(box_px, d=1.0 / box_px, device=device).round().long()
    return torch.remainder(freq_index, grid_px)


def _fourier_multiplier(
    k2: torch.Tensor, deapodisation: torch.Tensor, widths_px: torch.Tensor
) -> torch.Tensor:
    """Gaussian transforms divided by the spreading kernel's transform.

    Parameters
    ----------
    k2
        Squared frequency (cycles/px)^2, any shape S.
    deapodisation
        Transform of the spreading kernel, broadcastable to S.
    widths_px
        `(C,)` widths in pixels.

    Returns
    -------
    torch.Tensor
        `(C, *S)` real multipliers.
    """
    sigma2 = widths_px.reshape(-1, *([1] * k2.ndim)) ** 2
    return torch.exp(-2.0 * math.pi**2 * sigma2 * k2) / deapodisation


def _check_channels(masses: torch.Tensor, widths_a: torch.Tensor) -> None:
    if widths_a.ndim != 1 or masses.shape[-1] != widths_a.shape[0]:
        raise ValueError(
            f"masses (..., N, C) and widths (C,) disagree: masses {tuple(masses.shape)}, "
            f"widths {tuple(widths_a.shape)}"
        )


def render_projections(
    positions_a: torch.Tensor,
    masses: torch.Tensor,
    widths_a: torch.Tensor,
    rotations: torch.Tensor,
    shifts_a: torch.Tensor,
    box_px: int,
    pixel_size_a: float,
    ctf: torch.Tensor | None = None,
    oversampling: int = 2,
) -> torch.Tensor:
    """Fourier transforms of CTF-modulated projections of Gaussians.

    Parameters
    ----------
    positions_a
        `(N, 3)` shared or `(B, N, 3)` per-image Gaussian centres (x, y, z) in Å relative to
        the box centre.
    masses
        `(N, C)` or `(B, N, C)` masses per width channel (voxel units).
    widths_a
        `(C,)` Gaussian widths (standard deviations) in Å.
    rotations
        `(B, 3, 3)` RELION matrices ``A`` (a point r appears at ``(A r)_xy``).
    shifts_a
        `(B, 2)` position of the particle centre relative to the box centre, in Å
        (``-origin`` in RELION terms).
    box_px
        Image size D (even).
    pixel_size_a
        Pixel size in Å.
    ctf
        Optional `(B, D, D//2+1)` CTF in the rfft layout.
    oversampling
        Spreading grid oversampling factor (1 or 2).

    Returns
    -------
    torch.Tensor
        `(B, D, D//2+1)` complex rfft of the images (DC at index 0); the real-space image
        is ``torch.fft.irfft2(result, s=(D, D))`` with the box centre at index ``D//2``.
    """
    _check_channels(masses, widths_a)
    batch = rotations.shape[0]
    points_a = project_points(positions_a, rotations) + shifts_a[:, None, :]
    grid_px = box_px * oversampling
    coords = (points_a / pixel_size_a + box_px / 2) * oversampling
    weights = masses.expand(batch, *masses.shape[-2:]) if masses.ndim == 2 else masses
    grid = spread_bspline(coords, weights, grid_px)
    spectrum = torch.fft.rfft2(grid)
    if oversampling > 1:
        rows = _band_rows(box_px, grid_px, grid.device)
        spectrum = spectrum[..., rows, : box_px // 2 + 1]
    ky, kx = rfft_frequencies_2d(box_px, device=grid.device, dtype=grid.dtype)
    deapodisation = bspline_transform(ky / oversampling) * bspline_transform(kx / oversampling)
    multiplier = _fourier_multiplier(ky**2 + kx**2, deapodisation, widths_a.to(grid) / pixel_size_a)
    image_ft = (spectrum * multiplier).sum(dim=1)
    if ctf is not None:
        image_ft = image_ft * ctf
    return image_ft


def render_volume(
    positions_a: torch.Tensor,
    masses: torch.Tensor,
    widths_a: torch.Tensor,
    box_px: int,
    pixel_size_a: float,
    oversampling: int = 2,
) -> torch.Tensor:
    """Real-space volume(s) of Gaussians sampled at voxel centres.

    Parameters
    ----------
    positions_a
        `(N, 3)` or `(B, N, 3)` centres (x, y, z) in Å relative to the box centre.
    masses
        `(N, C)` or `(B, N, C)` masses per width channel (voxel units).
    widths_a
        `(C,)` widths in Å.
    box_px
        Box size D (even).
    pixel_size_a
        Voxel size in Å.
    oversampling
        Spreading grid oversampling factor (1 or 2).

    Returns
    -------
    torch.Tensor
        `(D, D, D)` (or `(B, D, D, D)`) volume indexed (z, y, x), centre at ``D//2``.
    """
    _check_channels(masses, widths_a)
    single = positions_a.ndim == 2
    positions = positions_a[None] if single else positions_a
    weights = masses[None] if masses.ndim == 2 else masses
    weights = weights.expand(positions.shape[0], *weights.shape[-2:])
    grid_px = box_px * oversampling
    coords = (positions / pixel_size_a + box_px / 2) * oversampling
    grid = spread_bspline(coords, weights, grid_px)
    spectrum = torch.fft.rfftn(grid, dim=(-3, -2, -1))
    if oversampling > 1:
        rows = _band_rows(box_px, grid_px, grid.device)
        spectrum = spectrum[..., rows, :, :][..., rows, :][..., : box_px // 2 + 1]
    kz, ky, kx = rfft_frequencies_3d(box_px, device=grid.device, dtype=grid.dtype)
    deapodisation = (
        bspline_transform(kz / oversampling)
        * bspline_transform(ky / oversampling)
        * bspline_transform(kx / oversampling)
    )
    multiplier = _fourier_multiplier(
        kz**2 + ky**2 + kx**2, deapodisation, widths_a.to(grid) / pixel_size_a
    )
    volume_ft = (spectrum * multiplier).sum(dim=1)
    volume = torch.fft.irfftn(volume_ft, s=(box_px,) * 3, dim=(-3, -2, -1))
    return volume[0] if single else volume


def images_from_fourier(image_ft: torch.Tensor, box_px: int) -> torch.Tensor:
    """Real-space images `(B, D, D)` from their rfft `(B, D, D//2+1)`."""
    return torch.fft.irfft2(image_ft, s=(box_px, box_px))
