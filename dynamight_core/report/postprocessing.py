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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dynamight_core.metrics.fsc import (
    MaskedFsc,
    corrected_like,
    flatten_amplitudes,
    fsc_area,
    jackknife_fsc,
    jackknife_standard_error,
    masked_fsc,
)
from dynamight_core.metrics.sharpening import GuinierFit, guinier_fit, sharpen


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
        The Guinier fit of the masked, FSC-weighted full map.
    applied_bfactor_a2
        The B-factor (Å², positive = sharpening) the sharpened map undoes.
    sharpened
        `(D, D, D)` float32 sharpened, masked full map.
    jackknife_areas
        `(G,)` corrected masked FSC area with each Fourier sector left out in turn
        (:func:`metrics.fsc.jackknife_fsc`): the area's standard error, and paired with
        another map's, the error of their difference.
    """

    curves: MaskedFsc
    guinier: GuinierFit
    applied_bfactor_a2: float
    sharpened: np.ndarray
    jackknife_areas: np.ndarray

    def summary(self) -> dict[str, float | int | list[float]]:
        """The headline numbers, rounded for the JSON."""
        corrected, unmasked = self.curves.corrected, self.curves.unmasked
        return {
            "resolution_0143_a": round(corrected.resolution_at(0.143), 3),
            "unmasked_resolution_0143_a": round(unmasked.resolution_at(0.143), 3),
            "masked_fsc_area": round(fsc_area(corrected.fsc), 6),
            "masked_fsc_area_se": round(jackknife_standard_error(self.jackknife_areas), 6),
            "unmasked_fsc_area": round(fsc_area(unmasked.fsc), 6),
            "randomised_from_shell": int(self.curves.randomised_from_shell),
            "bfactor_a2": round(self.guinier.bfactor_a2, 2),
            "applied_bfactor_a2": round(self.applied_bfactor_a2, 2),
            "guinier_correlation": round(self.guinier.correlation, 4),
            "guinier_from_a": round(self.guinier.fit_from_a, 3),
            "guinier_to_a": round(self.guinier.fit_to_a, 3),
            "masked_fsc_area_jackknife": [round(float(a), 8) for a in self.jackknife_areas],
        }


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
    """Post-process two `(D, D, D)` half maps inside a `(D, D, D)` soft mask in [0, 1]."""
    flat1, flat2 = flatten_amplitudes(half1, half2)
    curves = masked_fsc(flat1, flat2, mask, pixel_size_a, settings.seed, settings.randomise_at_fsc)
    corrected = curves.corrected
    resolution_a = corrected.resolution_at(0.143)
    if not math.isfinite(resolution_a):
        resolution_a = 2.0 * pixel_size_a
    masked_full = 0.5 * (half1 + half2) * mask
    # FSC weights only: a low-pass centred on twice Nyquist leaves every shell's gain at 1
    weighted = sharpen(masked_full, pixel_size_a, 0.0, pixel_size_a, corrected.fsc)
    fit_to_a = max(resolution_a, 2.0 * pixel_size_a)
    guinier = guinier_fit(
        weighted,
        pixel_size_a,
        guinier_range_from_a(settings, fit_to_a, half1.shape[0] * pixel_size_a),
        fit_to_a,
    )
    applied = guinier.bfactor_a2 if settings.bfactor_a2 is None else settings.bfactor_a2
    sharpened = sharpen(masked_full, pixel_size_a, applied, resolution_a, corrected.fsc) * mask
    replicates = corrected_like(jackknife_fsc(flat1 * mask, flat2 * mask), curves)
    areas = replicates[:, 1:].mean(axis=1)
    return Postprocessed(curves, guinier, applied, sharpened.astype(np.float32), areas)
