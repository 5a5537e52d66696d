"""Soft masks for maps: spherical, and from a thresholded map."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree


def _cosine_edge(distance_px: np.ndarray, soft_edge_px: float) -> np.ndarray:
    """1 inside (distance <= 0), raised-cosine fall-off to 0 over ``soft_edge_px``."""
    if soft_edge_px <= 0:
        return (distance_px <= 0).astype(np.float32)
    ramp = np.clip(distance_px / soft_edge_px, 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * ramp)).astype(np.float32)


def spherical_mask(box_px: int, radius_px: float, soft_edge_px: float) -> np.ndarray:
    """`(D, D, D)` soft sphere centred at index ``D//2``.

    Parameters
    ----------
    box_px
        Box size D.
    radius_px
        Radius (px) inside which the mask is 1.
    soft_edge_px
        Width (px) of the raised-cosine edge.
    """
    axis = np.arange(box_px) - box_px // 2
    radius = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    return _cosine_edge(radius - radius_px, soft_edge_px)


def circular_mask(box_px: int, radius_px: float, soft_edge_px: float = 0.0) -> np.ndarray:
    """`(D, D)` soft disc centred at index ``D//2``."""
    axis = np.arange(box_px) - box_px // 2
    radius = np.sqrt(axis[:, None] ** 2 + axis[None, :] ** 2)
    return _cosine_edge(radius - radius_px, soft_edge_px)


def mask_from_map(
    volume: np.ndarray, threshold: float, extend_px: float, soft_edge_px: float
) -> np.ndarray:
    """Soft mask around the density above ``threshold``.

    Parameters
    ----------
    volume
        `(D, D, D)` map.
    threshold
        Density level that defines the particle.
    extend_px
        Distance (px) by which the binary region is grown before the soft edge.
    soft_edge_px
        Width (px) of the raised-cosine edge.
    """
    inside = volume > threshold
    if not inside.any():
        raise ValueError(f"no voxel of the map exceeds the mask threshold {threshold:g}")
    distance = ndimage.distance_transform_edt(~inside)
    return _cosine_edge(distance - extend_px, soft_edge_px)


def points_mask(
    points_a: np.ndarray, radius_a: float, box_px: int, pixel_size_a: float, soft_edge_px: float
) -> np.ndarray:
    """`(D, D, D)` 1 within ``radius_a`` of any point, raised-cosine edge of ``soft_edge_px``.

    ``points_a``: `(N, 3)` positions (x, y, z) in Å from the box centre (voxel ``D // 2``).
    """
    z, y, x = np.indices((box_px,) * 3)
    voxels_a = (np.stack([x, y, z], axis=-1).reshape(-1, 3) - box_px // 2) * pixel_size_a
    distance_a, _ = cKDTree(np.asarray(points_a, dtype=np.float64)).query(voxels_a)
    beyond_px = (distance_a.reshape((box_px,) * 3) - radius_a) / pixel_size_a
    return _cosine_edge(beyond_px, soft_edge_px)


def enclosing_level(volume: np.ndarray, enclosed_fraction: float = 0.5) -> float:
    """The level above which the voxels of ``volume`` hold ``enclosed_fraction`` of it.

    Of its positive density (0 for a map with none): a contour that shows a particle's
    domains whatever its scale.
    """
    values = np.clip(np.asarray(volume, dtype=np.float64), 0.0, None).ravel()
    ordered = np.sort(values)[::-1]
    cumulative = np.cumsum(ordered)
    if cumulative[-1] <= 0:
        return 0.0
    index = int(np.searchsorted(cumulative, enclosed_fraction * cumulative[-1]))
    return float(ordered[min(index, len(ordered) - 1)])
