"""How well a Gaussian model reproduces a map: FSC, correlation and resolution limits."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from dynamight_core.metrics.fsc import FscCurve, fsc, masked_fsc

logger = logging.getLogger(__name__)

MAP_THRESHOLD = 0.143


def _curve(curve: FscCurve) -> dict[str, object]:
    return {
        "fsc": [round(float(v), 5) for v in curve.fsc],
        "resolution_0143_a": round(curve.resolution_at(0.143), 3),
        "resolution_05_a": round(curve.resolution_at(0.5), 3),
    }


def map_resolution(own: FscCurve) -> tuple[float | None, int]:
    """A map's resolution from its half maps' FSC, and the last shell at that resolution.

    Parameters
    ----------
    own
        Corrected masked FSC of the map's two half maps.

    Returns
    -------
    resolution_a
        Where the FSC falls below 0.143 (Å), or ``None`` when it is below 0.143 from the
        lowest shell on or not finite: the map holds no signal the half maps agree on
        (e.g. one half set is noise), so its resolution is worse than the lowest shell.
    last_shell
        The highest shell at or below that resolution; shell 1 (the lowest) when
        ``resolution_a`` is ``None``.
    """
    resolution_a = own.resolution_at(MAP_THRESHOLD)
    lowest_shell_a = own.box_px * own.pixel_size_a
    if not math.isfinite(resolution_a) or resolution_a > lowest_shell_a:
        logger.warning(
            "the half maps' FSC %s from the lowest shell on: the map's resolution is worse "
            "than %.1f Å (one half set may hold no signal); the model is compared with the "
            "map at the lowest shell only",
            "is not finite" if np.isnan(own.fsc).any() else f"is below {MAP_THRESHOLD}",
            lowest_shell_a,
        )
        return None, 1
    return resolution_a, max(1, int(np.floor(lowest_shell_a / resolution_a)))


@dataclass(frozen=True)
class FitQuality:
    """Agreement of a rendered model with the map it was fitted to.

    Attributes
    ----------
    unmasked, masked_corrected
        FSC of model against map, without mask and masked (phase-randomisation corrected).
    correlation_in_mask
        Correlation of model and map inside the fit mask.
    relative_residual_in_mask
        ``|mask (model - map)|^2 / |mask map|^2``.
    map_resolution_a
        The map's own resolution from its half maps (FSC 0.143), or ``None`` without half
        maps or when their FSC never reaches 0.143 (see :func:`map_resolution`).
    min_fsc_to_map_resolution
        Lowest masked FSC of model against map up to that resolution (``None`` without
        half maps).
    """

    unmasked: FscCurve
    masked_corrected: FscCurve
    correlation_in_mask: float
    relative_residual_in_mask: float
    map_resolution_a: float | None = None
    min_fsc_to_map_resolution: float | None = None

    def record(self) -> dict[str, object]:
        """JSON-ready record (curves with their resolutions, rounded numbers)."""
        record: dict[str, object] = {
            "unmasked": _curve(self.unmasked),
            "masked_corrected": _curve(self.masked_corrected),
            "correlation_in_mask": round(self.correlation_in_mask, 5),
            "relative_residual_in_mask": round(self.relative_residual_in_mask, 6),
        }
        if self.min_fsc_to_map_resolution is not None:
            resolution = self.map_resolution_a
            record["map_resolution_0143_a"] = None if resolution is None else round(resolution, 3)
            record["min_fsc_to_map_resolution"] = round(self.min_fsc_to_map_resolution, 5)
        return record


def fit_quality(
    model_map: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    pixel_size_a: float,
    half_maps: tuple[np.ndarray, np.ndarray] | None = None,
) -> FitQuality:
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
    unmasked = fsc(model_map, target, pixel_size_a)
    if half_maps is None:
        return FitQuality(unmasked, corrected, correlation, residual)
    own = masked_fsc(half_maps[0], half_maps[1], mask, pixel_size_a).corrected
    resolution_a, last_shell = map_resolution(own)
    lowest = float(corrected.fsc[1 : last_shell + 1].min())
    return FitQuality(unmasked, corrected, correlation, residual, resolution_a, lowest)
