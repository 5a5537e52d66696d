"""Cubic B-spline spreading of weighted points onto a periodic grid (2D or 3D).

This is the gridding step of a non-uniform FFT: each point puts its weight on the 4^d
nearest grid nodes with cubic B-spline weights; dividing the grid's DFT by the kernel's
transform (``sinc^4`` per axis) then recovers the points' Fourier transform inside the
band. The forward and backward passes are written by hand: the backward gathers the
incoming gradient at the same taps, which is several times cheaper than autograd through
the scatter and keeps memory to one gather per pass.
"""

from __future__ import annotations

from typing import Any

import torch

TAPS = 4
PAD_LOW = 1
PAD_HIGH = 2

# w_m(t) = sum_p t^p * _BSPLINE[p, m] for the taps at floor(q) - 1 + m, m = 0..3, t = q - floor(q)
_BSPLINE = torch.tensor(
    [
        [1 / 6, 4 / 6, 1 / 6, 0.0],
        [-3 / 6, 0.0, 3 / 6, 0.0],
        [3 / 6, -1.0, 3 / 6, 0.0],
        [-1 / 6, 3 / 6, -3 / 6, 1 / 6],
    ],
    dtype=torch.float64,
)
_BSPLINE_DERIVATIVE = torch.stack(
    [_BSPLINE[1], 2 * _BSPLINE[2], 3 * _BSPLINE[3], torch.zeros(4, dtype=torch.float64)]
)


def _powers(t: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` powers ``[1, t, t^2, t^3]`` of a fractional offset."""
    t2 = t * t
    return torch.stack([torch.ones_like(t), t, t2, t2 * t], dim=-1)


def _outer_taps(weights: torch.Tensor) -> torch.Tensor:
    """Tensor-product tap weights.

    Parameters
    ----------
    weights
        `(B, N, d, 4)` per-axis weights, axis order (x, y[, z]).

    Returns
    -------
    torch.Tensor
        `(B, N, 4^d)` with the slowest axis last in (x, y, z), i.e. array order (z, y, x).
    """
    dims = weights.shape[-2]
    taps = weights[..., dims - 1, :]
    for axis in range(dims - 2, -1, -1):
        taps = (taps[..., :, None] * weights[..., axis, None, :]).flatten(-2)
    return taps


def _tap_offsets(dims: int, padded: int, device: torch.device) -> torch.Tensor:
    """`(4^d,)` flat offsets of the taps in a padded grid, matching :func:`_outer_taps`."""
    steps = torch.arange(TAPS, device=device, dtype=torch.int64)
    offsets = torch.zeros(1, dtype=torch.int64, device=device)
    for axis in range(dims - 1, -1, -1):
        offsets = (offsets[:, None] + steps[None, :] * padded**axis).flatten()
    return offsets


def _fold_padding(grid: torch.Tensor, dims: int, size: int) -> torch.Tensor:
    """Wrap the padding of a `(..., P, ..., P)` grid back onto its periodic interior."""
    for axis in range(grid.ndim - dims, grid.ndim):
        interior = grid.narrow(axis, PAD_LOW, size).clone()
        interior.narrow(axis, size - PAD_LOW, PAD_LOW).add_(grid.narrow(axis, 0, PAD_LOW))
        interior.narrow(axis, 0, PAD_HIGH).add_(grid.narrow(axis, PAD_LOW + size, PAD_HIGH))
        grid = interior
    return grid


def _periodic_pad(grid: torch.Tensor, dims: int) -> torch.Tensor:
    """Inverse of :func:`_fold_padding` for gradients: periodic padding of the last d axes."""
    for axis in range(grid.ndim - dims, grid.ndim):
        size = grid.shape[axis]
        low = grid.narrow(axis, size - PAD_LOW, PAD_LOW)
        high = grid.narrow(axis, 0, PAD_HIGH)
        grid = torch.cat([low, grid, high], dim=axis)
    return grid


def _contract_last(values: torch.Tensor, axis_weights: torch.Tensor) -> torch.Tensor:
    """Sum the last tap axis of `(B, N, ..., 4)` against `(B, N, 4)` weights."""
    shape = axis_weights.shape[:2] + (1,) * (values.ndim - 3) + (TAPS,)
    return (values * axis_weights.reshape(shape)).sum(-1)


def _tap_gradients(
    per_point: torch.Tensor, weights: torch.Tensor, slopes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Contract per-tap values with the B-spline weights, one axis at a time.

    Parameters
    ----------
    per_point
        `(B, N, 4, ..., 4)` values at the taps in array order (z, y, x).
    weights, slopes
        `(B, N, d, 4)` per-axis weights and their derivatives, axis order (x, y, z).

    Returns
    -------
    tuple of torch.Tensor
        `(B, N)` sum of values times the tap weights, and `(B, N, d)` the same with the
        weights of each axis replaced by their derivative (the coordinate gradient).
    """
    dims = weights.shape[-2]
    # plain[k]: contracted with weights on every axis so far; mixed[a]: derivative on axis a
    plain = per_point
    mixed: list[torch.Tensor] = []
    for axis in range(dims):  # x is the last array axis, then y, then z
        mixed = [_contract_last(m, weights[..., axis, :]) for m in mixed]
        mixed.append(_contract_last(plain, slopes[..., axis, :]))
        plain = _contract_last(plain, weights[..., axis, :])
    return plain, torch.stack(mixed, dim=-1)


class _SpreadFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        coords: torch.Tensor,
        weights: torch.Tensor,
        size: int,
    ) -> torch.Tensor:
        batch, _, dims = coords.shape
        channels = weights.shape[-1]
        padded = size + PAD_LOW + PAD_HIGH
        if batch * channels * padded**dims >= 2**31:
            raise ValueError("spreading grid too large for 32-bit indices; use smaller batches")
        wrapped = torch.remainder(coords, size)
        floor = torch.floor(wrapped).clamp_(max=size - 1)
        powers = _powers(wrapped - floor)
        taps = _outer_taps(powers @ _BSPLINE.to(powers))
        strides = padded ** torch.arange(dims, device=coords.device, dtype=torch.int32)
        base = (floor.to(torch.int32) * strides).sum(-1, dtype=torch.int32)
        offsets = _tap_offsets(dims, padded, coords.device).to(torch.int32)
        slots = torch.arange(batch * channels, device=coords.device, dtype=torch.int32)
        slots = (slots * padded**dims).view(batch, 1, channels, 1)
        flat = (base[:, :, None, None] + offsets) + slots
        values = weights[..., None] * taps[:, :, None, :]
        grid = torch.zeros(
            batch * channels * padded**dims, dtype=coords.dtype, device=coords.device
        )
        grid.index_add_(0, flat.reshape(-1), values.reshape(-1))
        grid = grid.view(batch, channels, *([padded] * dims))
        ctx.save_for_backward(flat, powers, taps, weights)
        return _fold_padding(grid, dims, size)

    @staticmethod
    def backward(
        ctx: Any, grad_grid: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        flat, powers, taps, weights = ctx.saved_tensors
        batch, n_points, dims = powers.shape[:3]
        padded_grad = _periodic_pad(grad_grid.contiguous(), dims).reshape(-1)
        gathered = padded_grad.index_select(0, flat.reshape(-1)).view(flat.shape)
        grad_weights = None
        if ctx.needs_input_grad[1]:
            grad_weights = (gathered * taps[:, :, None, :]).sum(-1)
        grad_coords = None
        if ctx.needs_input_grad[0]:
            per_point = (gathered * weights[..., None]).sum(2)
            per_point = per_point.view(batch, n_points, *([TAPS] * dims))
            axis_weights = powers @ _BSPLINE.to(powers)
            axis_slopes = powers @ _BSPLINE_DERIVATIVE.to(powers)
            _, grad_coords = _tap_gradients(per_point, axis_weights, axis_slopes)
        return grad_coords, grad_weights, None


def spread_bspline(coords: torch.Tensor, weights: torch.Tensor, size: int) -> torch.Tensor:
    """Spread weighted points onto a periodic grid with a cubic B-spline kernel.

    Parameters
    ----------
    coords
        `(B, N, d)` point coordinates (x, y[, z]) in grid-node units, d = 2 or 3. Node
        ``i`` sits at coordinate ``i``; coordinates wrap periodically.
    weights
        `(B, N, C)` weight of every point in each of C channels.
    size
        Grid size along every axis.

    Returns
    -------
    torch.Tensor
        `(B, C, size, size[, size])` grid in array order (z, y, x); differentiable with
        respect to ``coords`` and ``weights``.
    """
    if coords.ndim != 3 or coords.shape[-1] not in (2, 3):
        raise ValueError(f"coords must have shape (B, N, 2|3), got {tuple(coords.shape)}")
    if weights.shape[:2] != coords.shape[:2] or weights.ndim != 3:
        raise ValueError(
            f"weights must have shape (B, N, C) matching coords {tuple(coords.shape[:2])}, "
            f"got {tuple(weights.shape)}"
        )
    return _SpreadFunction.apply(coords, weights.to(coords.dtype), size)


def bspline_transform(frequency: torch.Tensor) -> torch.Tensor:
    """Fourier transform of the cubic B-spline, ``sinc(f)^4``, at ``f`` cycles per node."""
    return torch.sinc(frequency) ** 4
