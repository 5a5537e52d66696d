"""Placing Gaussians in a consensus map.

Gaussians are drawn from the voxels whose density exceeds a threshold (and that lie inside
the mask, if any), with probability proportional to the density above the threshold, and
jittered within their voxel. The default threshold is the map's noise level: the median
plus three robust standard deviations (1.4826 x MAD) of the voxels outside a sphere of
0.4 x the box, but at least 10% of the map's maximum (Wiener-filtered maps have little
background noise, and a lower level would cover their blurred surroundings).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.config_schema import default_of
from dynamight_core.errors import InputError
from dynamight_core.geometry.masks import spherical_mask
from dynamight_core.io.mrc import Volume
from dynamight_core.models.gaussians import GaussianModel

logger = logging.getLogger(__name__)

VOLUME_PER_RESIDUE_A3 = 130.0
WIDTH_CLASS_RATIO = 1.6
MIN_THRESHOLD_FRACTION = 0.1


@dataclass(frozen=True)
class SeedSettings:
    """How many Gaussians, where, and how wide.

    Attributes
    ----------
    n_gaussians
        Explicit count; if ``None``, ``gaussians_per_residue`` times the residue count.
    gaussians_per_residue
        Gaussians per residue (the paper recommends 2).
    n_residues
        Sequence length; if ``None``, estimated from the volume above the threshold at
        130 Å^3 per residue.
    threshold
        Density threshold; ``None`` for the default (module docstring).
    n_width_classes
        Number of shared widths C.
    seed
        Random seed of the placement.
    """

    n_gaussians: int | None = default_of("gaussians", "n_gaussians")
    gaussians_per_residue: float = default_of("gaussians", "gaussians_per_residue")
    n_residues: int | None = default_of("gaussians", "n_residues")
    threshold: float | None = default_of("gaussians", "threshold")
    n_width_classes: int = default_of("gaussians", "n_width_classes")
    seed: int = default_of("gaussians", "seed")


def default_threshold(data: np.ndarray) -> float:
    """Noise-derived density threshold (see the module docstring)."""
    outside = spherical_mask(data.shape[0], 0.4 * data.shape[0], 0.0) < 0.5
    background = data[outside]
    median = float(np.median(background))
    noise = 1.4826 * float(np.median(np.abs(background - median)))
    return max(median + 3.0 * noise, MIN_THRESHOLD_FRACTION * float(data.max()))


def _count(settings: SeedSettings, volume_above_a3: float) -> int:
    if settings.n_gaussians is not None:
        return settings.n_gaussians
    residues = settings.n_residues or max(1, round(volume_above_a3 / VOLUME_PER_RESIDUE_A3))
    count = max(1, round(settings.gaussians_per_residue * residues))
    logger.info(
        "%d Gaussians: %.1f per residue x %d residues%s",
        count,
        settings.gaussians_per_residue,
        residues,
        "" if settings.n_residues else " (estimated from the map volume)",
    )
    return count


def seed_model(
    volume: Volume, mask: np.ndarray | None, settings: SeedSettings
) -> tuple[GaussianModel, float]:
    """A Gaussian model placed in ``volume``; returns it and the threshold used.

    Raises
    ------
    InputError
        If no voxel exceeds the threshold, or more Gaussians are asked for than there are
        voxels above it.
    """
    data = volume.data
    source = volume.path or "consensus map"
    threshold = settings.threshold if settings.threshold is not None else default_threshold(data)
    candidates = data > threshold
    if mask is not None:
        candidates &= mask > 0.5
    n_above = int(candidates.sum())
    if n_above == 0:
        raise InputError(
            source,
            "threshold",
            f"a level below the map's maximum "
            f"{float(data.max()):.4g}" + (" inside the mask" if mask is not None else ""),
            f"{threshold:.4g}, which no voxel exceeds",
        )
    pixel = volume.voxel_size_a
    count = _count(settings, n_above * pixel**3)
    if count > n_above:
        raise InputError(
            source,
            "n_gaussians",
            f"at most {n_above} (the voxels above the threshold {threshold:.4g})",
            f"{count}",
            "Lower the threshold or ask for fewer Gaussians.",
        )
    rng = np.random.default_rng(settings.seed)
    where = np.flatnonzero(candidates)
    weights = data.flat[where] - threshold
    chosen = rng.choice(where, size=count, replace=False, p=weights / weights.sum())
    z, y, x = np.unravel_index(chosen, data.shape)
    jitter = rng.uniform(-0.5, 0.5, size=(count, 3))
    centre = data.shape[0] // 2
    positions_a = (np.stack([x, y, z], axis=1) - centre + jitter) * pixel
    spacing_a = (n_above * pixel**3 / count) ** (1.0 / 3.0)
    base_a = max(0.5 * spacing_a, 1.5 * pixel)
    ladder = WIDTH_CLASS_RATIO ** (
        np.arange(settings.n_width_classes) - (settings.n_width_classes - 1) / 2
    )
    widths_a = np.maximum(base_a * ladder, 1.2 * pixel)
    total_mass = float(np.clip(data[candidates], 0, None).sum())
    model = GaussianModel(
        torch.as_tensor(positions_a, dtype=torch.float32),
        torch.full((count,), max(total_mass, 1e-12) / count),
        torch.as_tensor(widths_a, dtype=torch.float32),
        volume.box_px,
        pixel,
    )
    logger.info(
        "seeded %d Gaussians above threshold %.4g (%d voxels); widths %s Å",
        count,
        threshold,
        n_above,
        ", ".join(f"{w:.2f}" for w in widths_a),
    )
    return model, threshold
