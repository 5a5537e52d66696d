"""Fourier-space grids and phase factors in the ``torch.fft`` rfft layout (DC at index 0).

2D helpers act on image transforms of shape `(D, D//2+1)` (``torch.fft.rfft2``), 3D
helpers on volume transforms of shape `(D, D, D//2+1)` (``torch.fft.rfftn``). Twins of the
two dimensions share a name and differ only in the ``_2d`` / ``_3d`` suffix.
"""

from __future__ import annotations

import math

import torch


def rfft_frequencies_2d(
    box_px: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequencies of a 2D rfft in cycles per pixel.

    Parameters
    ----------
    box_px
        Image size D (square, even).
    device, dtype
        Where and in which precision the frequencies are made.

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

    Parameters
    ----------
    box_px
        Volume size D (cubic, even).
    device, dtype
        Where and in which precision the frequencies are made.

    Returns
    -------
    tuple of torch.Tensor
        ``(kz, ky, kx)`` broadcastable to `(D, D, D//2+1)`, in cycles/voxel.
    """
    kz = torch.fft.fftfreq(box_px, device=device, dtype=dtype)[:, None, None]
    ky = torch.fft.fftfreq(box_px, device=device, dtype=dtype)[None, :, None]
    kx = torch.fft.rfftfreq(box_px, device=device, dtype=dtype)[None, None, :]
    return kz, ky, kx


def shell_index_2d(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """Nearest integer shell of every pixel of a 2D rfft.

    Parameters
    ----------
    box_px
        Image size D (square, even).
    device
        Where the result is made.

    Returns
    -------
    torch.Tensor
        `(D, D//2+1)` int64 shell numbers ``round(|k| * D)`` (k in cycles/px).
    """
    ky, kx = rfft_frequencies_2d(box_px, device=device, dtype=torch.float64)
    return torch.round(torch.sqrt(ky**2 + kx**2) * box_px).long()


def shell_index_3d(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """Nearest integer shell of every voxel of a 3D rfft.

    Parameters
    ----------
    box_px
        Volume size D (cubic, even).
    device
        Where the result is made.

    Returns
    -------
    torch.Tensor
        `(D, D, D//2+1)` int64 shell numbers ``round(|k| * D)`` (k in cycles/voxel).
    """
    kz, ky, kx = rfft_frequencies_3d(box_px, device=device, dtype=torch.float64)
    radius = torch.sqrt(kz**2 + ky**2 + kx**2) * box_px
    return torch.round(radius).long()


def _column_multiplicity(
    box_px: int, dtype: torch.dtype, device: torch.device | None
) -> torch.Tensor:
    """`(D//2+1,)` 1 for the kx = 0 and Nyquist columns of an rfft, 2 for the others."""
    weights = torch.full((box_px // 2 + 1,), 2.0, dtype=dtype, device=device)
    weights[0] = 1.0
    weights[-1] = 1.0
    return weights


def hermitian_weights_2d(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """Multiplicity of each 2D rfft column in the full transform (1 or 2).

    Columns with ``0 < kx < D/2`` stand for themselves and their Friedel mates.

    Parameters
    ----------
    box_px
        Image size D (square, even).
    device
        Where the result is made.

    Returns
    -------
    torch.Tensor
        `(1, D//2+1)` float32 weights, broadcastable to the `(D, D//2+1)` rfft.
    """
    return _column_multiplicity(box_px, torch.float32, device)[None, :]


def hermitian_weights_3d(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """Multiplicity of each 3D rfft voxel in the full transform (1 or 2).

    Voxels with ``0 < kx < D/2`` stand for themselves and their Friedel mates.

    Parameters
    ----------
    box_px
        Volume size D (cubic, even).
    device
        Where the result is made.

    Returns
    -------
    torch.Tensor
        `(1, 1, D//2+1)` float64 weights, broadcastable to the `(D, D, D//2+1)` rfft.
    """
    return _column_multiplicity(box_px, torch.float64, device)[None, None, :]


def centre_phase_2d(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """Checkerboard ``(-1)^(iy+ix)`` that moves the transform origin to the image centre.

    Multiplying an rfft by it is the same as ``ifftshift`` of the real-space image first:
    the phases become relative to pixel ``D//2``.

    Parameters
    ----------
    box_px
        Image size D (square, even).
    device
        Where the result is made.

    Returns
    -------
    torch.Tensor
        `(D, D//2+1)` float32 of ±1.
    """
    idx_y = torch.arange(box_px, device=device)
    idx_x = torch.arange(box_px // 2 + 1, device=device)
    return 1.0 - 2.0 * ((idx_y[:, None] + idx_x[None, :]) % 2).float()


def centre_phase_3d(box_px: int, device: torch.device | None = None) -> torch.Tensor:
    """Checkerboard ``(-1)^(iz+iy+ix)`` that moves the transform origin to the box centre.

    Multiplying an rfft by it is the same as ``ifftshift`` of the real-space array first.

    Parameters
    ----------
    box_px
        Volume size D (cubic, even).
    device
        Where the result is made.

    Returns
    -------
    torch.Tensor
        `(D, D, D//2+1)` float32 of ±1.
    """
    idx = torch.arange(box_px, device=device)
    idx_x = torch.arange(box_px // 2 + 1, device=device)
    parity = idx[:, None, None] + idx[None, :, None] + idx_x[None, None, :]
    return 1.0 - 2.0 * (parity % 2).float()


def crop_fourier_2d(images_ft: torch.Tensor, size: int) -> torch.Tensor:
    """The low frequencies of 2D rffts: the transforms of images downsampled to ``size``.

    Parameters
    ----------
    images_ft
        `(..., D, D//2+1)` rffts (any dtype).
    size
        Output size (even, at most D).

    Returns
    -------
    torch.Tensor
        `(..., size, size//2+1)` rffts holding the frequencies ``|ky|, kx < size/2``
        (cycles per D-pixel times D); ``images_ft`` itself when ``size == D``. Values are
        not rescaled.
    """
    box = images_ft.shape[-2]
    if size == box:
        return images_ft
    rows = torch.cat([torch.arange(size // 2), torch.arange(box - size // 2, box)]).to(
        images_ft.device
    )
    return images_ft[..., rows, : size // 2 + 1]


def shift_phase_2d(box_px: int, shifts_px: torch.Tensor) -> torch.Tensor:
    """Phase ramps that move particles at ``shifts_px`` to the box centre.

    Multiplying an image's rfft by its ramp translates the image by ``-shifts_px``.

    Parameters
    ----------
    box_px
        Image size D (square, even).
    shifts_px
        `(B, 2)` (x, y) particle-centre positions relative to the box centre (px).

    Returns
    -------
    torch.Tensor
        `(B, D, D//2+1)` complex unit phasors ``exp(2 pi i (kx x + ky y))`` with float32
        frequencies k in cycles/px, on the device of ``shifts_px``.
    """
    ky, kx = rfft_frequencies_2d(box_px, device=shifts_px.device)
    angle = 2 * math.pi * (kx * shifts_px[:, 0, None, None] + ky * shifts_px[:, 1, None, None])
    return torch.polar(torch.ones_like(angle), angle)
