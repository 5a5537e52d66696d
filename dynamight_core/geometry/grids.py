"""Fourier-space frequency grids in the ``torch.fft.rfftn`` layout (DC at index 0)."""

from __future__ import annotations

import torch


def rfft_frequencies_2d(
    box_px: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequencies of a 2D rfft in cycles per pixel.

    Parameters
    ----------
    box_px
        Image size D (square, even).

    Returns
    -------
    tuple of torch.Tensor
        ``(ky, kx)`` with shapes `(D, 1)` and `(1, D//2+1)`, in cycles/px.
    """
    ky = torch.fft.fftfreq(box_px, device=device, dtype=dtype)[:, None]
    kx = torch.fft.rfftfreq(box_px, device=device, dtype=dtype)[None, :]
    return ky, kx


def rfft_frequencies_3d(
    box_px: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frequencies of a 3D rfft in cycles per voxel.

    Returns
    -------
    tuple of torch.Tensor
        ``(kz, ky, kx)`` broadcastable to `(D, D, D//2+1)`, in cycles/voxel.
    """
    kz = torch.fft.fftfreq(box_px, device=device, dtype=dtype)[:, None, None]
    ky = torch.fft.fftfreq(box_px, device=device, dtype=dtype)[None, :, None]
    kx = torch.fft.rfftfreq(box_px, device=device, dtype=dtype)[None, None, :]
    return kz, ky, kx


def radial_shell_index_3d(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """Nearest integer shell of every voxel of a 3D rfft.

    Returns
    -------
    torch.Tensor
        `(D, D, D//2+1)` int64 shell numbers ``round(|k| * D)``.
    """
    kz, ky, kx = rfft_frequencies_3d(box_px, device=device, dtype=torch.float64)
    radius = torch.sqrt(kz**2 + ky**2 + kx**2) * box_px
    return torch.round(radius).long()


def rfft_hermitian_weights_3d(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """Multiplicity of each rfft voxel in the full transform (1 or 2).

    Voxels with ``0 < kx < D/2`` stand for themselves and their Friedel mate.

    Returns
    -------
    torch.Tensor
        `(1, 1, D//2+1)` float64 weights, broadcastable to the rfft volume.
    """
    weights = torch.full((box_px // 2 + 1,), 2.0, dtype=torch.float64, device=device)
    weights[0] = 1.0
    weights[-1] = 1.0
    return weights[None, None, :]


def centre_phase_3d(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """Checkerboard ``(-1)^(iz+iy+ix)`` that moves the transform origin to the box centre.

    Multiplying an rfft by it is the same as ``ifftshift`` of the real-space array first.

    Returns
    -------
    torch.Tensor
        `(D, D, D//2+1)` float32 of ±1.
    """
    idx = torch.arange(box_px, device=device)
    idx_x = torch.arange(box_px // 2 + 1, device=device)
    parity = idx[:, None, None] + idx[None, :, None] + idx_x[None, None, :]
    return 1.0 - 2.0 * (parity % 2).float()
