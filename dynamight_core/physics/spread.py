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


def _axis_weights(t: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` cubic B-spline weights of the taps at ``floor(q) - 1 + m``, m = 0..3.

    ``t = q - floor(q)`` in [0, 1); closed form, written tap by tap (faster than a product
    with a 4 x 4 matrix or a stack along a trailing axis of 4).
    """
    u = 1.0 - t
    t2 = t * t
    t3 = t2 * t
    weights = t.new_empty(*t.shape, TAPS)
    weights[..., 0] = u * u * u / 6
    weights[..., 1] = 0.5 * t3 - t2 + 2 / 3
    weights[..., 2] = -0.5 * t3 + 0.5 * t2 + 0.5 * t + 1 / 6
    weights[..., 3] = t3 / 6
    return weights


def _axis_slopes(t: torch.Tensor) -> torch.Tensor:
    """`(..., 4)` derivatives of :func:`_axis_weights` with respect to q."""
    u = 1.0 - t
    t2 = t * t
    slopes = t.new_empty(*t.shape, TAPS)
    slopes[..., 0] = -0.5 * u * u
    slopes[..., 1] = 1.5 * t2 - 2 * t
    slopes[..., 2] = -1.5 * t2 + t + 0.5
    slopes[..., 3] = 0.5 * t2
    return slopes


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
    """Sum the last tap axis of `(B, N, ..., 4)` against `(B, N, 4)` weights.

    A batched matrix-vector product: several times faster than a broadcast multiply and
    sum over a trailing axis of 4.
    """
    batch, n_points = axis_weights.shape[:2]
    flat = values.reshape(batch * n_points, -1, TAPS)
    column = axis_weights.reshape(batch * n_points, TAPS, 1)
    return torch.bmm(flat, column).view(values.shape[:-1])


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
        offset = wrapped - floor
        taps = _outer_taps(_axis_weights(offset))
        strides = padded ** torch.arange(dims, device=coords.device, dtype=torch.int32)
        base = (floor.to(torch.int32) * strides).sum(-1, dtype=torch.int32)
        offsets = _tap_offsets(dims, padded, coords.device).to(torch.int32)
        slots = torch.arange(batch * channels, device=coords.device, dtype=torch.int32)
        slots = (slots * padded**dims).view(batch, 1, channels, 1)
        flat = (base[:, :, None, None] + offsets) + slots
        # one product per channel: a broadcast over the trailing tap axis is several times slower
        values = torch.stack([taps * weights[..., c, None] for c in range(channels)], dim=2)
        grid = torch.zeros(
            batch * channels * padded**dims, dtype=coords.dtype, device=coords.device
        )
        grid.index_add_(0, flat.reshape(-1), values.reshape(-1))
        grid = grid.view(batch, channels, *([padded] * dims))
        ctx.save_for_backward(flat, offset, taps, weights)
        return _fold_padding(grid, dims, size)

    @staticmethod
    def backward(
        ctx: Any, grad_grid: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        flat, offset, taps, weights = ctx.saved_tensors
        batch, n_points, dims = offset.shape
        channels = weights.shape[-1]
        padded_grad = _periodic_pad(grad_grid.contiguous(), dims).reshape(-1)
        gathered = padded_grad.index_select(0, flat.reshape(-1)).view(flat.shape)
        grad_weights = None
        if ctx.needs_input_grad[1]:
            grad_weights = torch.bmm(
                gathered.view(batch * n_points, channels, -1), taps.reshape(-1, taps.shape[-1], 1)
            ).view(batch, n_points, channels)
        grad_coords = None
        if ctx.needs_input_grad[0]:
            per_point = gathered[:, :, 0] * weights[..., 0, None]
            for channel in range(1, channels):
                per_point = per_point + gathered[:, :, channel] * weights[..., channel, None]
            per_point = per_point.view(batch, n_points, *([TAPS] * dims))
            _, grad_coords = _tap_gradients(per_point, _axis_weights(offset), _axis_slopes(offset))
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
