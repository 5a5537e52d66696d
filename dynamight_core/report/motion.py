"""Motion reliability by region: where on the model the estimated motion can be trusted."""

from __future__ import annotations

import numpy as np
from scipy.cluster.vq import kmeans2


def spatial_regions(positions_a: np.ndarray, n_regions: int, seed: int = 0) -> np.ndarray:
    """`(N,)` region label 0..K-1 of each `(N, 3)` position (k-means, K <= N, numbered by x).

    Regions are numbered by their centre's x, then y, then z, so that the numbering does
    not depend on the clustering's internal order.
    """
    count = min(n_regions, len(positions_a))
    if count <= 1:
        return np.zeros(len(positions_a), dtype=np.int64)
    centres, labels = kmeans2(
        np.asarray(positions_a, dtype=np.float64), count, minit="++", seed=seed
    )
    present = np.unique(labels)
    order = sorted(present, key=lambda k: tuple(centres[k]))
    renumber = {int(old): new for new, old in enumerate(order)}
    return np.array([renumber[int(k)] for k in labels], dtype=np.int64)


def region_table(
    positions_a: np.ndarray, regions: np.ndarray, motion_a: np.ndarray, error_a: np.ndarray
) -> list[dict[str, float | int]]:
    """Per region: size, centre (Å), RMS motion and RMS error of its points (Å)."""
    rows: list[dict[str, float | int]] = []
    for region in np.unique(regions):
        inside = regions == region
        centre = positions_a[inside].mean(axis=0)
        motion = float(np.sqrt(np.mean(motion_a[inside] ** 2)))
        error = float(np.sqrt(np.mean(error_a[inside] ** 2)))
        rows.append(
            {
                "region": int(region),
                "gaussians": int(inside.sum()),
                "centre_x_a": round(float(centre[0]), 2),
                "centre_y_a": round(float(centre[1]), 2),
                "centre_z_a": round(float(centre[2]), 2),
                "motion_rms_a": round(motion, 4),
                "error_rms_a": round(error, 4),
                "error_over_motion": round(error / max(motion, 1e-12), 4),
            }
        )
    return rows


def voxel_of(positions_a: np.ndarray, box_px: int, pixel_size_a: float) -> np.ndarray:
    """`(N, 3)` (z, y, x) voxel index nearest each `(N, 3)` (x, y, z) position (Å).

    Positions are measured from the box centre, index ``D // 2``; indices are clipped to
    the box.
    """
    index = np.rint(np.asarray(positions_a)[:, ::-1] / pixel_size_a).astype(np.int64)
    return np.clip(index + box_px // 2, 0, box_px - 1)


def region_local_resolution(
    positions_a: np.ndarray,
    regions: np.ndarray,
    maps_a: dict[str, np.ndarray],
    pixel_size_a: float,
) -> dict[int, dict[str, float]]:
    """Per region, each local-resolution map's median (Å) at its pseudo-atoms' voxels.

    Voxels outside the mask (value <= 0 or NaN) are left out; a region with none gets NaN.
    """
    result: dict[int, dict[str, float]] = {}
    for region in np.unique(regions):
        inside = regions == region
        for label, volume in maps_a.items():
            voxels = voxel_of(positions_a[inside], volume.shape[0], pixel_size_a)
            values = volume[voxels[:, 0], voxels[:, 1], voxels[:, 2]]
            values = values[np.isfinite(values) & (values > 0)]
            median = float(np.median(values)) if values.size else float("nan")
            result.setdefault(int(region), {})[label] = round(median, 3)
    return result
