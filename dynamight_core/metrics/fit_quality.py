"""How well a Gaussian model reproduces a map: FSC, correlation and resolution limits."""

from __future__ import annotations

import numpy as np

from dynamight_core.metrics.fsc import FscCurve, fsc, masked_fsc


def _curve(curve: FscCurve) -> dict[str, object]:
    return {
        "fsc": [round(float(v), 5) for v in curve.fsc],
        "resolution_0143_a": round(curve.resolution_at(0.143), 3),
        "resolution_05_a": round(curve.resolution_at(0.5), 3),
    }


def fit_quality(
    model_map: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    pixel_size_a: float,
    half_maps: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, object]:
    """Agreement of a rendered model with the map it was fitted to.

    Parameters
    ----------
    model_map, target
        `(D, D, D)` rendered model and map.
    mask
        `(D, D, D)` soft mask of the fit.
    pixel_size_a
        Voxel size in Å.
    half_maps
        The map's two half maps, to state its own resolution with the same mask.

    Returns
    -------
    dict
        ``unmasked`` and ``masked_corrected`` FSC curves with their resolutions,
        ``correlation_in_mask``, ``relative_residual_in_mask`` and, with half maps,
        ``map_resolution_0143_a`` and ``min_fsc_to_map_resolution``.
    """
    weights = mask / mask.sum()
    centred_model = model_map - (weights * model_map).sum()
    centred_target = target - (weights * target).sum()
    correlation = float(
        (weights * centred_model * centred_target).sum()
        / np.sqrt((weights * centred_model**2).sum() * (weights * centred_target**2).sum())
    )
    residual = float((mask * (model_map - target) ** 2).sum() / (mask * target**2).sum())
    corrected = masked_fsc(model_map, target, mask, pixel_size_a).corrected
    record: dict[str, object] = {
        "unmasked": _curve(fsc(model_map, target, pixel_size_a)),
        "masked_corrected": _curve(corrected),
        "correlation_in_mask": round(correlation, 5),
        "relative_residual_in_mask": round(residual, 6),
    }
    if half_maps is not None:
        own = masked_fsc(half_maps[0], half_maps[1], mask, pixel_size_a).corrected
        resolution = own.resolution_at(0.143)
        last_shell = int(np.floor(target.shape[0] * pixel_size_a / resolution))
        record["map_resolution_0143_a"] = round(resolution, 3)
        record["min_fsc_to_map_resolution"] = round(
            float(corrected.fsc[1 : last_shell + 1].min()), 5
        )
    return record
