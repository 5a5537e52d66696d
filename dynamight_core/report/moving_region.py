"""Where it moves: every pair's masked FSC inside the region the motion blurs.

Over the whole mask, a half-map FSC is dominated by what does not move: the consensus
shows a rigid core as sharply as the deformed maps do, and it shows the moving part as the
same blur in both of its half maps, which its halves then agree on. The gain of the
deformed maps is where the consensus blurs, so the report also measures each pair inside
the **moving region**: the mask times a soft region around the pseudo-atoms whose decoded
RMS motion (deformation-error's per-Gaussian table) is at least ``fraction`` of the
consensus resolution ``d``. A spread of ``d / 2`` along the wave vector damps the
resolution shell's amplitude by ``exp(-2 pi^2 / 4) < 1%``: there the consensus has lost its
resolution shell, and there a correct motion gains the most. The region comes from the
decoded motion, never from the maps it scores, and the three pairs (consensus, deformed,
null) are scored in the same region with the same corrected masked FSC and block
jackknife as over the whole mask (:func:`~dynamight_core.report.postprocessing.postprocess`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dynamight_core.geometry.masks import points_mask
from dynamight_core.report.postprocessing import PostprocessSettings, postprocess

# fewer moving pseudo-atoms than this make no region (a few points are noise, not a domain)
MIN_MOVING_GAUSSIANS = 10
# width of the region's soft edge, in pixels
SOFT_EDGE_PX = 3.0


def moving_region(
    gaussians: Any,
    resolution_a: float,
    fraction: float,
    mask: np.ndarray,
    pixel_size_a: float,
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    settings: PostprocessSettings,
) -> dict[str, Any] | None:
    """Every pair's post-processing numbers inside the moving region, or ``None``.

    Parameters
    ----------
    gaussians
        deformation-error's per-Gaussian table (columns x_a, y_a, z_a, motion_rms_a; Å).
    resolution_a
        The consensus maps' resolution (Å): the motion threshold is ``fraction`` of it and
        the region reaches that far around the moving pseudo-atoms.
    mask
        `(D, D, D)` the soft mask of every masked number.
    pairs
        label -> the two `(D, D, D)` half maps.

    Returns ``None`` when fewer than :data:`MIN_MOVING_GAUSSIANS` pseudo-atoms move that far.
    """
    threshold_a = fraction * resolution_a
    moving = gaussians[gaussians["motion_rms_a"] >= threshold_a]
    if len(moving) < MIN_MOVING_GAUSSIANS:
        return None
    points_a = moving[["x_a", "y_a", "z_a"]].to_numpy()
    region = mask * points_mask(points_a, resolution_a, mask.shape[0], pixel_size_a, SOFT_EDGE_PX)
    scored = {
        label: postprocess(half1, half2, region, pixel_size_a, settings).summary()
        for label, (half1, half2) in pairs.items()
    }
    return {
        "threshold_a": round(threshold_a, 4),
        "radius_a": round(resolution_a, 4),
        "gaussians": len(moving),
        "of_gaussians": len(gaussians),
        "mask_fraction": round(float(region.sum() / max(mask.sum(), 1e-12)), 4),
        "maps": {
            label: {
                key: values[key]
                for key in (
                    "resolution_0143_a",
                    "masked_fsc_area",
                    "masked_fsc_area_se",
                    "masked_fsc_area_jackknife",
                )
            }
            for label, values in scored.items()
        },
    }
