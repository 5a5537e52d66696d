"""Local resolution between two half maps by a windowed FSC (as in Blocres or RELION).

Method
------
Window centres lie on a regular grid of spacing ``step_px`` along each axis, aligned so
that the box centre ``D//2`` is a node; a node is evaluated when the mask there is at
least 0.5. Around every evaluated centre ``c`` the cube of indices ``c - W/2 .. c + W/2 - 1``
(``W = window_px``, even) is cut from both half maps, with zeros outside the box, and
multiplied by a soft sphere centred on ``c`` (index ``W/2`` of the cube): 1 out to radius
``W/2 - WINDOW_EDGE_PX``, then a raised cosine down to 0 at radius ``W/2``. A hard sphere's
transform rings (side lobes falling only as ``1/k**2`` in amplitude), which would leak the
strong low-frequency power of a real map into the high shells of every window; a 3 px
raised-cosine edge (``WINDOW_EDGE_PX``) suppresses that and still keeps the inner
``W/2 - 3`` px (7 px for the default 20 px window) at full weight.

The windows are gathered, ``batch_windows`` centres at a time, by indexing a strided
(``unfold``) view of all grid windows of zero-padded copies of the maps, transformed with
one batched ``torch.fft.rfftn`` (float32, on the chosen device) and reduced to per-shell
sums in float64 (one matrix product with a shell-membership matrix holding the Friedel
weights). Shells follow :mod:`dynamight_core.metrics.fsc`: nearest-integer radii of the
window's rfft grid, Friedel pairs counted twice, voxels beyond Nyquist dropped. Window
shell ``k`` stands for ``W * pixel / k`` Å.

The local resolution of a window is where its FSC first falls below ``threshold``,
interpolated linearly in frequency between the last shell above and the first below
(:meth:`FscCurve.resolution_at`); Nyquist (``2 * pixel``) if it never falls below, and
never worse than the window size ``W * pixel`` (shell 1), which is also the answer when
the curve starts below the threshold. NaN in the maps gives NaN.

The centre values are put on the full grid of nodes, nodes that were not evaluated
(outside the mask) are filled from their nearest evaluated node, and the grid is
interpolated trilinearly to every voxel (voxels beyond the outer nodes take the value of
the nearest node), so that voxels near the mask edge are interpolated only between
meaningful values. Voxels where the mask is below 0.5 are NaN.

Windowing blurs a map's spectrum by about a window shell. A sharp spectral cut-off in
white noise of a tenth of the signal's power reads one to two shells better than it is,
because the blurred signal's tail keeps the FSC above 0.143 past the cut; the estimate
lands on the cut when the noise beyond it is strong enough to bring the blurred FSC to
the threshold there. Single windows scatter by a few tenths of a shell.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from dynamight_core.geometry.fourier import hermitian_weights_3d, shell_index_3d
from dynamight_core.geometry.masks import spherical_mask

logger = logging.getLogger(__name__)

WINDOW_EDGE_PX = 3.0
"""Width (px) of the raised-cosine edge of the spherical window."""

_MASK_LEVEL = 0.5


@dataclass(frozen=True)
class LocalResolution:
    """Local resolution map of two half maps and the window values it was made from.

    Attributes
    ----------
    map_a
        `(D, D, D)` float32 local resolution (Å) at every voxel; NaN where the mask < 0.5.
    centres_px
        `(N, 3)` int64 voxel indices (z, y, x) of the evaluated window centres.
    values_a
        `(N,)` float64 local resolution (Å) of those windows.
    window_px
        Edge of the cubic window (px).
    step_px
        Spacing of the grid of window centres (px).
    threshold
        FSC threshold.
    pixel_size_a
        Voxel size (Å).
    """

    map_a: np.ndarray
    centres_px: np.ndarray
    values_a: np.ndarray
    window_px: int
    step_px: int
    threshold: float
    pixel_size_a: float

    def shell_resolutions_a(self) -> np.ndarray:
        """`(window_px//2+1,)` resolution (Å) of every window shell; ``inf`` for shell 0."""
        shells = np.arange(self.window_px // 2 + 1, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return self.window_px * self.pixel_size_a / shells


def _as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _check_arguments(
    shape: tuple[int, ...], other: tuple[int, ...], window_px: int, step_px: int, batch: int
) -> None:
    if shape != other or len(shape) != 3 or len(set(shape)) != 1:
        raise ValueError(
            f"local resolution needs two cubic maps of one shape, got {shape}, {other}"
        )
    if window_px % 2 or window_px < 2 * WINDOW_EDGE_PX + 2:
        raise ValueError(f"window_px must be even and >= {2 * WINDOW_EDGE_PX + 2:g}: {window_px}")
    if step_px < 1 or batch < 1:
        raise ValueError(f"step_px and batch_windows must be positive: {step_px}, {batch}")


def _grid_axis_px(box_px: int, step_px: int) -> np.ndarray:
    """`(n,)` voxel indices of the grid nodes along one axis; ``box_px // 2`` is one."""
    return np.arange((box_px // 2) % step_px, box_px, step_px)


def _grid_nodes(box_px: int, step_px: int, mask: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """The grid and which of its nodes are evaluated.

    Returns
    -------
    tuple of np.ndarray
        ``(axis_px, evaluated)``: `(n,)` node indices along each axis (px) and the
        `(n, n, n)` bool array of nodes where the mask is >= 0.5 (all when no mask).
    """
    axis_px = _grid_axis_px(box_px, step_px)
    n = axis_px.size
    if mask is None:
        return axis_px, np.ones((n, n, n), dtype=bool)
    return axis_px, mask[np.ix_(axis_px, axis_px, axis_px)] >= _MASK_LEVEL


class _WindowFsc:
    """Batched window FSC of two half maps on one device."""

    def __init__(
        self, half1: torch.Tensor, half2: torch.Tensor, window_px: int, first_px: int, step_px: int
    ) -> None:
        device = half1.device
        half_window = window_px // 2
        padded = torch.stack(
            [torch.nn.functional.pad(half, (half_window,) * 6) for half in (half1, half2)]
        )  # (2, D+W, D+W, D+W) float32, zeros outside the box
        # the window around the node at voxel c starts at padded index c; first_px is the
        # first node along each axis, so this strided view holds every node's window
        self.windows = (
            padded[:, first_px:, first_px:, first_px:]
            .unfold(1, window_px, step_px)
            .unfold(2, window_px, step_px)
            .unfold(3, window_px, step_px)
        )  # (2, n, n, n, W, W, W) view, node (i, j, k) at index (i, j, k)
        edge = spherical_mask(window_px, half_window - WINDOW_EDGE_PX, WINDOW_EDGE_PX)
        self.taper = torch.as_tensor(edge, dtype=torch.float32, device=device)
        self.shell_matrix = _shell_matrix(window_px, device)

    def __call__(self, nodes: torch.Tensor) -> torch.Tensor:
        """FSC curves of the windows around grid nodes.

        Parameters
        ----------
        nodes
            `(B, 3)` int64 grid-node indices (z, y, x) of the window centres.

        Returns
        -------
        torch.Tensor
            `(B, W//2+1)` float64 FSC per window shell.
        """
        cubes = self.windows[:, nodes[:, 0], nodes[:, 1], nodes[:, 2]]  # (2, B, W, W, W)
        spectra = torch.fft.rfftn(cubes * self.taper, dim=(-3, -2, -1)).flatten(2)
        re, im = spectra.real, spectra.imag
        products = torch.stack(
            [re[0] * re[1] + im[0] * im[1], re[0] ** 2 + im[0] ** 2, re[1] ** 2 + im[1] ** 2]
        )  # (3, B, M) float32: cross term and the two powers per rfft voxel
        cross, power1, power2 = products.double() @ self.shell_matrix
        return cross / torch.sqrt(power1 * power2).clamp(min=1e-30)


def _shell_matrix(window_px: int, device: torch.device) -> torch.Tensor:
    """Shell sums as a matrix product.

    Returns
    -------
    torch.Tensor
        `(W*W*(W//2+1), W//2+1)` float64: row m holds the Friedel weight (1 or 2) of rfft
        voxel m in the column of its shell; voxels beyond Nyquist have empty rows.
    """
    n_shells = window_px // 2 + 1
    shells = shell_index_3d(window_px, device=device).flatten()
    weights = hermitian_weights_3d(window_px, device=device).expand(window_px, window_px, n_shells)
    inside = shells < n_shells
    matrix = torch.zeros(shells.numel(), n_shells, dtype=torch.float64, device=device)
    matrix[torch.nonzero(inside).squeeze(1), shells[inside]] = weights.flatten()[inside]
    return matrix


def _resolutions_a(
    fsc: np.ndarray, threshold: float, window_px: int, pixel_size_a: float
) -> np.ndarray:
    """Resolution (Å) where each curve first falls below ``threshold``.

    Parameters
    ----------
    fsc
        `(N, W//2+1)` FSC per window shell.

    Returns
    -------
    np.ndarray
        `(N,)` float64 resolution (Å), interpolated linearly in frequency as in
        :meth:`FscCurve.resolution_at`, Nyquist if never below, at worst ``W * pixel``;
        NaN for curves holding NaN.
    """
    rows = np.arange(fsc.shape[0])
    below = fsc[:, 1:] < threshold
    first = np.argmax(below, axis=1) + 1
    upper, lower = fsc[rows, first - 1], fsc[rows, first]
    crossing = first - 1 + (upper - threshold) / np.maximum(upper - lower, 1e-12)
    worst_a = window_px * pixel_size_a
    with np.errstate(divide="ignore"):
        resolution_a = np.where(crossing > 0, worst_a / crossing, math.inf)
    resolution_a = np.where(below.any(axis=1), resolution_a, 2.0 * pixel_size_a)
    resolution_a = np.minimum(resolution_a, worst_a)
    return np.where(np.isfinite(fsc).all(axis=1), resolution_a, math.nan)


def _window_fsc_batches(fsc_of: _WindowFsc, nodes: np.ndarray, batch_windows: int) -> np.ndarray:
    """`(N, W//2+1)` FSC curves of the windows at the `(N, 3)` grid nodes, batch by batch."""
    device = fsc_of.taper.device
    curves = [
        fsc_of(torch.as_tensor(nodes[start : start + batch_windows], device=device)).cpu().numpy()
        for start in range(0, len(nodes), batch_windows)
    ]
    return np.concatenate(curves)


def _interpolate_to_voxels(
    values_a: np.ndarray, evaluated: np.ndarray, first_px: int, step_px: int, box_px: int
) -> np.ndarray:
    """Trilinear interpolation of the node values to every voxel.

    Parameters
    ----------
    values_a
        `(N,)` resolution (Å) of the evaluated nodes, in C order of ``evaluated``.
    evaluated
        `(n, n, n)` bool, the nodes that were evaluated (at least one).
    first_px, step_px
        Voxel index of the first node along each axis and the node spacing (px).
    box_px
        Box size D.

    Returns
    -------
    np.ndarray
        `(D, D, D)` float32 resolution (Å). Nodes not evaluated take the value of the
        nearest evaluated node first; voxels beyond the outer nodes that of the nearest.
    """
    grid_a = np.zeros(evaluated.shape, dtype=np.float64)
    grid_a[evaluated] = values_a
    if not evaluated.all():
        nearest = ndimage.distance_transform_edt(
            ~evaluated, return_distances=False, return_indices=True
        )
        grid_a = grid_a[tuple(nearest)]
    node_coordinate = (np.arange(box_px) - first_px) / step_px
    coordinates = np.stack(np.meshgrid(*(node_coordinate,) * 3, indexing="ij"))
    return ndimage.map_coordinates(grid_a, coordinates, order=1, mode="nearest").astype(np.float32)


def _resolve_device(
    device: torch.device | str | None, half1: np.ndarray | torch.Tensor
) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(half1, torch.Tensor):
        return half1.device
    return torch.device("cpu")


def local_resolution(
    half1: np.ndarray | torch.Tensor,
    half2: np.ndarray | torch.Tensor,
    pixel_size_a: float,
    mask: np.ndarray | None = None,
    window_px: int = 20,
    step_px: int = 4,
    threshold: float = 0.143,
    device: torch.device | str | None = None,
    batch_windows: int = 1024,
) -> LocalResolution:
    """Local resolution of two half maps by the FSC in soft spherical windows.

    Parameters
    ----------
    half1, half2
        `(D, D, D)` half maps (D even).
    pixel_size_a
        Voxel size (Å).
    mask
        `(D, D, D)` soft mask in [0, 1]; windows are centred where it is >= 0.5 and the
        map is NaN where it is below. ``None``: the whole box.
    window_px
        Edge of the cubic window (px, even, at least ``2 * WINDOW_EDGE_PX + 2``).
    step_px
        Spacing of the window centres (px).
    threshold
        FSC threshold.
    device
        Where the windows are cut and transformed; by default that of ``half1`` when it
        is a tensor, else the CPU.
    batch_windows
        Windows transformed at once.

    Returns
    -------
    LocalResolution
        The `(D, D, D)` map (Å) and the `(N,)` window values (Å) at their `(N, 3)` centres.
    """
    run_on = _resolve_device(device, half1)
    map1 = torch.as_tensor(half1, dtype=torch.float32).to(run_on)
    map2 = torch.as_tensor(half2, dtype=torch.float32).to(run_on)
    _check_arguments(tuple(map1.shape), tuple(map2.shape), window_px, step_px, batch_windows)
    box_px = map1.shape[0]
    mask_np = None if mask is None else _as_numpy(mask)
    if mask_np is not None and mask_np.shape != tuple(map1.shape):
        raise ValueError(f"mask shape {mask_np.shape} differs from the maps' {tuple(map1.shape)}")
    axis_px, evaluated = _grid_nodes(box_px, step_px, mask_np)
    node_index = np.argwhere(evaluated)  # (N, 3), C order of the grid
    centres_px = axis_px[node_index].astype(np.int64).reshape(-1, 3)
    logger.info(
        "Local resolution: %d windows of %d px every %d px on %s",
        len(centres_px),
        window_px,
        step_px,
        run_on,
    )
    map_a = np.full((box_px,) * 3, np.nan, dtype=np.float32)
    values_a = np.zeros(0, dtype=np.float64)
    if len(centres_px):
        fsc_of = _WindowFsc(map1, map2, window_px, int(axis_px[0]), step_px)
        curves = _window_fsc_batches(fsc_of, node_index, batch_windows)
        values_a = _resolutions_a(curves, threshold, window_px, pixel_size_a)
        map_a = _interpolate_to_voxels(values_a, evaluated, int(axis_px[0]), step_px, box_px)
    else:
        logger.warning("Local resolution: no window centre inside the mask")
    if mask_np is not None:
        map_a[mask_np < _MASK_LEVEL] = np.nan
    return LocalResolution(
        map_a=map_a,
        centres_px=centres_px,
        values_a=values_a,
        window_px=window_px,
        step_px=step_px,
        threshold=threshold,
        pixel_size_a=float(pixel_size_a),
    )
