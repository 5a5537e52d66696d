"""Post-processing of a pair of half maps, as RELION's: masked FSC, B-factor, sharpening.

The full map is the mean of the halves. The FSC between the halves inside the mask
(measured on the halves with flattened amplitudes, :func:`metrics.fsc.flatten_amplitudes`:
our half maps are Wiener-filtered, and a mask would carry their strong low frequencies into
the filtered-out shells) is corrected for the mask's own correlation by phase randomisation
beyond the shell where the unmasked FSC falls below ``randomise_at_fsc`` (Chen et al.,
2013); the resolution is where the corrected curve crosses 0.143. The B-factor is the
Guinier fit (Rosenthal & Henderson, 2003) of the masked, FSC-weighted full map from
``guinier_from_a`` to that resolution; the sharpened map undoes it, weights each shell by
``sqrt(2 FSC / (1 + FSC))``, is low-passed at the resolution and masked.

Maps without signal have no resolution: a corrected FSC that crosses 0.143 before shell 2
(coarser than half the box), or one none of whose shells above 0.143 exceeds 3 standard
deviations of the FSC of pure noise in that mask (van Heel & Schatz, 2005, J. Struct. Biol.
151:250: ``1 / sqrt(n)`` for a shell of ``n`` independent Fourier voxels, half its voxels
(Friedel mates) times the fraction of the box the mask holds). The second rule stops the
first shells of a small box, a few dozen samples inside a small mask, from passing 0.143 by
chance. Then ``resolution_a`` is ``None``, no B-factor is fitted or applied, and the
"sharpened" map is the masked mean of the halves, neither sharpened nor filtered. A
resolution too low for a Guinier line (fewer than 3 shells) keeps its resolution and is
low-passed and FSC-weighted, with no B-factor (or the one set in ``bfactor_a2``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from dynamight_core.metrics.fsc import (
    FscCurve,
    MaskedFsc,
    corrected_like,
    flatten_amplitudes,
    fsc_area,
    jackknife_fsc,
    jackknife_standard_error,
    masked_fsc,
)
from dynamight_core.metrics.sharpening import GuinierFit, GuinierRangeError, guinier_fit, sharpen

logger = logging.getLogger(__name__)

MIN_RESOLVED_SHELLS = 2.0
"""A corrected FSC that crosses 0.143 before this shell (Fourier px) measures no resolution."""
SIGNIFICANCE_SIGMAS = 3.0
"""A resolution needs a shell above 0.143 whose FSC exceeds this many noise standard deviations."""


@dataclass(frozen=True)
class PostprocessSettings:
    """What post-processing does (config section ``postprocess``)."""

    randomise_at_fsc: float = 0.8
    guinier_from_a: float = 10.0
    bfactor_a2: float | None = None
    seed: int = 0


@dataclass(frozen=True)
class Postprocessed:
    """The curves, numbers and sharpened map of one pair of half maps.

    Attributes
    ----------
    curves
        Unmasked, masked, phase-randomised and corrected FSC between the halves.
    guinier
        The Guinier fit of the masked, FSC-weighted full map; ``None`` when none was
        possible (no resolution, or too few shells below it).
    applied_bfactor_a2
        The B-factor (Å², positive = sharpening) the sharpened map undoes (0 without a fit).
    sharpened
        `(D, D, D)` float32 sharpened, masked full map (the masked mean of the halves when
        they have no resolution).
    jackknife_areas
        `(G,)` corrected masked FSC area with each Fourier sector left out in turn
        (:func:`metrics.fsc.jackknife_fsc`): the area's standard error, and paired with
        another map's, the error of their difference.
    resolution_a
        The corrected masked FSC's 0.143 resolution (Å); ``None`` when the maps have none
        (:func:`measured_resolution_a`).
    """

    curves: MaskedFsc
    guinier: GuinierFit | None
    applied_bfactor_a2: float
    sharpened: np.ndarray
    jackknife_areas: np.ndarray
    resolution_a: float | None = None

    def summary(self) -> dict[str, float | int | list[float] | None]:
        """The headline numbers, rounded for the JSON (``None``: not measured)."""
        corrected, unmasked = self.curves.corrected, self.curves.unmasked
        guinier = self.guinier
        return {
            "resolution_0143_a": _rounded(self.resolution_a, 3),
            "has_resolution": self.resolution_a is not None,
            "unmasked_resolution_0143_a": _rounded(measured_resolution_a(unmasked), 3),
            "masked_fsc_area": round(fsc_area(corrected.fsc), 6),
            "masked_fsc_area_se": round(jackknife_standard_error(self.jackknife_areas), 6),
            "unmasked_fsc_area": round(fsc_area(unmasked.fsc), 6),
            "randomised_from_shell": int(self.curves.randomised_from_shell),
            "bfactor_a2": _rounded(None if guinier is None else guinier.bfactor_a2, 2),
            "applied_bfactor_a2": round(self.applied_bfactor_a2, 2),
            "guinier_correlation": _rounded(None if guinier is None else guinier.correlation, 4),
            "guinier_from_a": _rounded(None if guinier is None else guinier.fit_from_a, 3),
            "guinier_to_a": _rounded(None if guinier is None else guinier.fit_to_a, 3),
            "masked_fsc_area_jackknife": [round(float(a), 8) for a in self.jackknife_areas],
        }


def _rounded(value: float | None, digits: int) -> float | None:
    """``value`` rounded, ``None`` kept."""
    return None if value is None else round(value, digits)


def measured_resolution_a(
    curve: FscCurve, threshold: float = 0.143, volume_fraction: float = 1.0
) -> float | None:
    """Where ``curve`` falls below ``threshold`` (Å), or ``None`` when it measures nothing.

    ``None`` when the crossing is not finite (NaN curves, or one below the threshold from
    shell 0), lies before shell ``MIN_RESOLVED_SHELLS`` (a resolution coarser than half
    the box is what pure noise gives by chance in its first shells), or when no shell
    before it exceeds ``SIGNIFICANCE_SIGMAS`` standard deviations of pure noise's FSC
    (:func:`noise_fsc_sigma`, for maps masked to ``volume_fraction`` of the box).
    """
    resolution_a = curve.resolution_at(threshold)
    box_a = curve.box_px * curve.pixel_size_a
    if not math.isfinite(resolution_a) or resolution_a > box_a / MIN_RESOLVED_SHELLS:
        return None
    below = np.flatnonzero(curve.fsc[1:] < threshold)
    end = int(below[0]) + 1 if below.size else len(curve.fsc)
    sigma = noise_fsc_sigma(curve, volume_fraction)
    if not np.any(curve.fsc[1:end] > SIGNIFICANCE_SIGMAS * sigma[1:end]):
        return None
    return resolution_a


def noise_fsc_sigma(curve: FscCurve, volume_fraction: float = 1.0) -> np.ndarray:
    """`(S,)` standard deviation per shell of the FSC between two independent noise maps.

    ``1 / sqrt(n)``, with ``n`` the shell's voxels over two (a real map's transform has
    Friedel symmetry) times ``volume_fraction`` (a mask keeps that share of the independent
    samples), at least 1. Shell 0: infinite.
    """
    samples = np.maximum(0.5 * curve.n_voxels.astype(np.float64) * volume_fraction, 1.0)
    sigma = 1.0 / np.sqrt(samples)
    sigma[0] = np.inf
    return sigma


def mask_volume_fraction(mask: np.ndarray) -> float:
    """Share of the box a soft mask holds, as independent samples: ``(Σm²)² / (N Σm⁴)``.

    1 for no mask, the volume fraction for a binary one; 1 for an all-zero mask.
    """
    squared = np.asarray(mask, dtype=np.float64) ** 2
    fourth = float((squared**2).sum())
    return float(squared.sum()) ** 2 / (squared.size * fourth) if fourth > 0 else 1.0


MIN_GUINIER_SHELLS = 5


def guinier_range_from_a(settings: PostprocessSettings, fit_to_a: float, box_a: float) -> float:
    """Low end (Å) of the Guinier fit: ``guinier_from_a``, or an octave below ``fit_to_a``.

    RELION fits from 10 Å; a map whose resolution is near 10 Å leaves too few shells for a
    line, so the fit then starts at twice the resolution (at least ``MIN_GUINIER_SHELLS``).
    """
    shells = box_a * (1.0 / fit_to_a - 1.0 / settings.guinier_from_a)
    return settings.guinier_from_a if shells >= MIN_GUINIER_SHELLS else 2.0 * fit_to_a


def postprocess(
    half1: np.ndarray,
    half2: np.ndarray,
    mask: np.ndarray,
    pixel_size_a: float,
    settings: PostprocessSettings,
) -> Postprocessed:
    """Post-process two `(D, D, D)` half maps inside a `(D, D, D)` soft mask in [0, 1].

    Maps without a resolution (module docstring) are not sharpened; a warning says so.
    """
    flat1, flat2 = flatten_amplitudes(half1, half2)
    curves = masked_fsc(flat1, flat2, mask, pixel_size_a, settings.seed, settings.randomise_at_fsc)
    corrected = curves.corrected
    resolution_a = measured_resolution_a(corrected, volume_fraction=mask_volume_fraction(mask))
    masked_full = 0.5 * (half1 + half2) * mask
    replicates = corrected_like(jackknife_fsc(flat1 * mask, flat2 * mask), curves)
    areas = replicates[:, 1:].mean(axis=1)
    if resolution_a is None:
        logger.warning(
            "no resolution: the corrected masked FSC falls below 0.143 before shell %g or "
            "is nowhere above it by %g standard deviations of noise (the half maps hold no "
            "signal); no B-factor is fitted or applied, and the sharpened "
            "map is the masked mean of the halves, unfiltered",
            MIN_RESOLVED_SHELLS,
            SIGNIFICANCE_SIGMAS,
        )
        return Postprocessed(curves, None, 0.0, masked_full.astype(np.float32), areas, None)
    guinier = _guinier(masked_full, corrected.fsc, pixel_size_a, resolution_a, settings)
    fitted = 0.0 if guinier is None else guinier.bfactor_a2
    applied = fitted if settings.bfactor_a2 is None else settings.bfactor_a2
    sharpened = sharpen(masked_full, pixel_size_a, applied, resolution_a, corrected.fsc) * mask
    return Postprocessed(
        curves, guinier, applied, sharpened.astype(np.float32), areas, resolution_a
    )


def _guinier(
    masked_full: np.ndarray,
    fsc: np.ndarray,
    pixel_size_a: float,
    resolution_a: float,
    settings: PostprocessSettings,
) -> GuinierFit | None:
    """The Guinier fit of the FSC-weighted map up to ``resolution_a`` (Å).

    ``None`` (and a warning) when too few shells lie below that resolution for a line.
    """
    # FSC weights only: a low-pass centred on twice Nyquist leaves every shell's gain at 1
    weighted = sharpen(masked_full, pixel_size_a, 0.0, pixel_size_a, fsc)
    fit_to_a = max(resolution_a, 2.0 * pixel_size_a)
    try:
        return guinier_fit(
            weighted,
            pixel_size_a,
            guinier_range_from_a(settings, fit_to_a, masked_full.shape[0] * pixel_size_a),
            fit_to_a,
        )
    except GuinierRangeError as error:
        logger.warning("no B-factor fitted (%s); the map is not sharpened", error)
        return None
