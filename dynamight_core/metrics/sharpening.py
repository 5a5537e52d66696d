"""RELION-style post-processing: Guinier B-factor fit, map sharpening and automatic masks.

* :func:`guinier_fit` fits a straight line to ``ln <|F|>`` against ``s^2`` over a
  resolution range (10 Å to Nyquist by default), as in RELION's post-processing and
  Rosenthal & Henderson (2003), J. Mol. Biol. 333:721. A map whose amplitudes fall as
  ``exp(-B s^2 / 4)`` gives slope ``-B / 4``; the fit reports B (positive for a blurred
  map) and sharpening applies ``-B``.
* :func:`sharpen` undoes that decay, weights every shell by ``sqrt(2 FSC / (1 + FSC))``
  (Rosenthal & Henderson, 2003) and low-passes the result with a raised-cosine edge.
* :func:`mask_from_consensus` builds a soft mask the way ``relion_mask_create`` does:
  low-pass, binarise, grow and soften. Such masks are meant for the masked FSC whose
  mask-induced correlation is removed by phase randomisation (Chen et al., 2013,
  Ultramicroscopy 135:24; :func:`dynamight_core.metrics.fsc.masked_fsc`).

Shells follow :mod:`dynamight_core.metrics.fsc`: shell k holds the rfft voxels of
nearest-integer radius k (Fourier pixels) and has resolution ``D * pixel_size / k`` Å; its
spatial frequency is ``s = k / (D * pixel_size)`` 1/Å. The B-factor and the low-pass act
on each voxel's exact radius, the FSC weight on its shell.

Automatic mask threshold
------------------------
Without an explicit level, the low-passed map is binarised at its noise level: the median
plus z robust standard deviations (1.4826 x MAD) of the voxels outside a sphere of
0.4 x the box, but at least 10% of the low-passed map's maximum. The noise is measured on
the low-passed map, where it is far weaker than in the raw map, so weak but real density
stays inside. z is chosen so that pure noise crosses the level in fewer than 1 box in 20:
low-passed at shell k_c (Fourier pixels) the noise has about n = (4π/3) k_c^3 independent
values, and z = Φ^-1(1 - 0.05 / n), at least 3 (about 3.9 for a 96 Å box low-passed at
15 Å, 4.8 for 384 Å). A fixed 3σ level, the rule of the Gaussian seeding in
:mod:`dynamight_core.models.seeding`, lets a few noise excursions through in every box,
and those that touch the particle grow tendrils that the connected-region filter cannot
remove. The floor keeps maps without background noise (already filtered ones) from being
masked at their blurred surroundings, and noise blobs that still cross the level are
dropped by keeping only the largest connected region and those with at least 10% of its
volume.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage, stats

from dynamight_core.geometry.fourier import hermitian_weights_3d, shell_index_3d
from dynamight_core.geometry.masks import mask_from_map, spherical_mask

logger = logging.getLogger(__name__)

MIN_GUINIER_SHELLS = 3
LOWPASS_EDGE_SHELLS = 2.0
MIN_NOISE_SIGMAS = 3.0
NOISE_FALSE_ALARM_RATE = 0.05
MAD_TO_SIGMA = 1.4826
BACKGROUND_RADIUS_FRACTION = 0.4
MIN_THRESHOLD_FRACTION = 0.1
MIN_COMPONENT_FRACTION = 0.1


class GuinierRangeError(ValueError):
    """Too few shells with non-zero amplitude lie in the range of a Guinier fit."""


class EmptyMaskError(ValueError):
    """No voxel of the low-passed map exceeds the mask threshold.

    Attributes
    ----------
    threshold
        The density level applied (map units).
    maximum
        The low-passed map's maximum (map units).
    lowpass_a
        The low-pass resolution (Å).
    """

    def __init__(self, threshold: float, maximum: float, lowpass_a: float) -> None:
        self.threshold = threshold
        self.maximum = maximum
        self.lowpass_a = lowpass_a
        super().__init__(
            f"no voxel of the map low-passed at {lowpass_a:g} Å exceeds the mask threshold "
            f"{threshold:g} (its maximum is {maximum:g})"
        )


@dataclass(frozen=True)
class GuinierFit:
    """A straight line through ``ln <|F|>`` against ``s^2``.

    Attributes
    ----------
    bfactor_a2
        Fitted B (Å^2) of the amplitude decay ``|F(s)| ∝ exp(-B s^2 / 4)``; positive for a
        blurred map. Sharpening applies ``-B``.
    intercept
        ``ln <|F|>`` of the fitted line at ``s = 0``.
    correlation
        Pearson correlation of the fitted points (near -1 for a clean exponential decay).
    squared_frequency_a2
        `(S,)` ``s^2 = 1 / d^2`` (1/Å^2) of shells 1 .. D//2 (S = D//2).
    log_amplitude
        `(S,)` natural log of the mean amplitude of every shell (``-inf`` where it is 0).
    fitted
        `(S,)` bool, the shells used in the fit.
    fit_from_a, fit_to_a
        Resolution range (Å) of the fit, low to high.
    """

    bfactor_a2: float
    intercept: float
    correlation: float
    squared_frequency_a2: np.ndarray
    log_amplitude: np.ndarray
    fitted: np.ndarray
    fit_from_a: float
    fit_to_a: float


@dataclass(frozen=True)
class AutoMask:
    """A soft mask made from a consensus map, with the settings that made it.

    Attributes
    ----------
    mask
        `(D, D, D)` float32 in [0, 1].
    threshold
        Density level (map units) applied to the low-passed map.
    lowpass_a, extend_a, soft_edge_a
        Low-pass resolution, growth of the binary region and width of the soft edge (Å).
    volume_fraction
        Fraction of the box where the mask is at least 0.5.
    """

    mask: np.ndarray
    threshold: float
    lowpass_a: float
    extend_a: float
    soft_edge_a: float
    volume_fraction: float


def _check_cube(volume: np.ndarray) -> int:
    if volume.ndim != 3 or len(set(volume.shape)) != 1 or volume.shape[0] % 2:
        raise ValueError(f"expected a cubic map of even size, got shape {volume.shape}")
    return int(volume.shape[0])


def _radius_px(box_px: int) -> torch.Tensor:
    """`(D, D, D//2+1)` float64 radius of every rfft voxel in Fourier pixels."""
    freq = torch.fft.fftfreq(box_px, dtype=torch.float64) * box_px
    rfreq = torch.fft.rfftfreq(box_px, dtype=torch.float64) * box_px
    return torch.sqrt(freq[:, None, None] ** 2 + freq[None, :, None] ** 2 + rfreq**2)


def _lowpass_gain(radius_px: torch.Tensor, cut_shell: float, edge_shells: float) -> torch.Tensor:
    """1 below ``cut - edge/2``, 0 above ``cut + edge/2``, raised cosine between (RELION)."""
    if edge_shells <= 0:
        return (radius_px <= cut_shell).double()
    ramp = ((radius_px - (cut_shell - edge_shells / 2)) / edge_shells).clamp(0.0, 1.0)
    return 0.5 + 0.5 * torch.cos(math.pi * ramp)


def _lowpass(volume: np.ndarray, pixel_size_a: float, resolution_a: float) -> np.ndarray:
    """`(D, D, D)` float64 map low-passed at ``resolution_a`` with a 2-shell cosine edge."""
    box = _check_cube(volume)
    spectrum = torch.fft.rfftn(torch.as_tensor(volume, dtype=torch.float64))
    gain = _lowpass_gain(_radius_px(box), box * pixel_size_a / resolution_a, LOWPASS_EDGE_SHELLS)
    return torch.fft.irfftn(spectrum * gain, s=volume.shape).numpy()


def shell_mean_amplitude(volume: np.ndarray) -> np.ndarray:
    """Mean Fourier amplitude of shells 0 .. D//2 (full transform, Friedel pairs counted).

    Parameters
    ----------
    volume
        `(D, D, D)` map.

    Returns
    -------
    np.ndarray
        `(D//2+1,)` float64 mean ``|F|`` per shell, in the units of the unnormalised
        ``rfftn`` of the map.
    """
    box = _check_cube(volume)
    n_shells = box // 2 + 1
    shells = shell_index_3d(box).clamp(max=n_shells).flatten()
    weights = hermitian_weights_3d(box).expand(box, box, box // 2 + 1).flatten()
    amplitude = torch.fft.rfftn(torch.as_tensor(volume, dtype=torch.float64)).abs().flatten()
    total = torch.bincount(shells, weights=amplitude * weights, minlength=n_shells + 1)
    count = torch.bincount(shells, weights=weights, minlength=n_shells + 1)
    return (total / count.clamp(min=1.0))[:n_shells].numpy()


def guinier_fit(
    volume: np.ndarray,
    pixel_size_a: float,
    fit_from_a: float = 10.0,
    fit_to_a: float | None = None,
) -> GuinierFit:
    """Least-squares line of ``ln <|F|>`` against ``s^2`` (RELION post-processing).

    Parameters
    ----------
    volume
        `(D, D, D)` map.
    pixel_size_a
        Voxel size (Å).
    fit_from_a
        Lowest resolution (Å) of the fitted shells.
    fit_to_a
        Highest resolution (Å) of the fitted shells; ``None`` for Nyquist.

    Raises
    ------
    GuinierRangeError
        If fewer than 3 shells with non-zero amplitude lie between the two resolutions.
    """
    box = _check_cube(volume)
    high_a = 2.0 * pixel_size_a if fit_to_a is None else fit_to_a
    shells = np.arange(1, box // 2 + 1)
    resolution_a = box * pixel_size_a / shells
    with np.errstate(divide="ignore"):
        log_amplitude = np.log(shell_mean_amplitude(volume)[1:])
    tolerance_a = 1e-9 * fit_from_a
    fitted = (
        (resolution_a <= fit_from_a + tolerance_a)
        & (resolution_a >= high_a - tolerance_a)
        & np.isfinite(log_amplitude)
    )
    if fitted.sum() < MIN_GUINIER_SHELLS:
        raise GuinierRangeError(
            f"the Guinier fit needs at least {MIN_GUINIER_SHELLS} shells between "
            f"{fit_from_a:g} Å and {high_a:g} Å, but box {box} at {pixel_size_a:g} Å/px "
            f"has {int(fitted.sum())} (shell resolutions run from {resolution_a[0]:.3g} Å "
            f"to {resolution_a[-1]:.3g} Å)"
        )
    squared_frequency = 1.0 / resolution_a**2
    x, y = squared_frequency[fitted], log_amplitude[fitted]
    slope, intercept = np.polyfit(x, y, 1)
    correlation = float(np.corrcoef(x, y)[0, 1])
    logger.info(
        "Guinier fit %.3g–%.3g Å over %d shells: B = %.1f Å^2 (correlation %.3f)",
        fit_from_a,
        high_a,
        int(fitted.sum()),
        -4.0 * slope,
        correlation,
    )
    return GuinierFit(
        bfactor_a2=float(-4.0 * slope),
        intercept=float(intercept),
        correlation=correlation,
        squared_frequency_a2=squared_frequency,
        log_amplitude=log_amplitude,
        fitted=fitted,
        fit_from_a=float(fit_from_a),
        fit_to_a=float(high_a),
    )


def fsc_weights(fsc: np.ndarray) -> np.ndarray:
    """Per-shell weights ``sqrt(2 FSC / (1 + FSC))`` of RELION's post-processing.

    As in RELION, every shell from the first one (after shell 0, the map's mean) with
    ``FSC <= 0`` onwards gets weight 0, so noisy shells past the resolution limit that
    bounce above zero are not restored. Shell 0 itself gets weight 0 only if its FSC is.

    Parameters
    ----------
    fsc
        `(D//2+1,)` corrected half-map FSC, shells 0 .. D//2.

    Returns
    -------
    np.ndarray
        `(D//2+1,)` float64 weights in [0, 1].
    """
    values = np.asarray(fsc, dtype=np.float64)
    non_positive = np.flatnonzero(~(values[1:] > 0))
    last = int(non_positive[0]) + 1 if non_positive.size else len(values)
    clipped = np.clip(values[:last], 0.0, 1.0)
    weights = np.zeros_like(values)
    weights[:last] = np.sqrt(2.0 * clipped / (1.0 + clipped))
    return weights


def _shell_weight_grid(fsc: np.ndarray, box_px: int) -> torch.Tensor:
    """`(D, D, D//2+1)` FSC weight of every voxel's shell; 0 beyond Nyquist."""
    expected = box_px // 2 + 1
    if np.shape(fsc) != (expected,):
        raise ValueError(f"the FSC must have {expected} shells (0 .. D//2), got {np.shape(fsc)}")
    weights = torch.as_tensor(np.append(fsc_weights(fsc), 0.0))
    return weights[shell_index_3d(box_px).clamp(max=expected)]


def sharpen(
    volume: np.ndarray,
    pixel_size_a: float,
    bfactor_a2: float,
    resolution_a: float,
    fsc: np.ndarray | None = None,
    edge_shells: float = 2.0,
) -> np.ndarray:
    """Sharpened, FSC-weighted and low-passed map (RELION post-processing).

    The transform is multiplied by ``exp(+B s^2 / 4)`` (undoing the decay that
    :func:`guinier_fit` measures, i.e. applying a B-factor of ``-B``), by the weight of
    :func:`fsc_weights` per shell when ``fsc`` is given, and by a low-pass that is 1 below
    shell ``k_c - edge/2`` and 0 above ``k_c + edge/2``, with a raised cosine between and
    ``k_c = D * pixel_size / resolution_a`` (the edge is centred on the cut as in RELION).

    Parameters
    ----------
    volume
        `(D, D, D)` map (usually the average of the two half maps).
    pixel_size_a
        Voxel size (Å).
    bfactor_a2
        Fitted B (Å^2), positive for a blurred map; see :class:`GuinierFit`.
    resolution_a
        Low-pass resolution (Å), usually the FSC = 0.143 resolution.
    fsc
        `(D//2+1,)` corrected half-map FSC, or ``None`` for no weighting.
    edge_shells
        Width of the low-pass edge in Fourier pixels.

    Returns
    -------
    np.ndarray
        `(D, D, D)` float32 sharpened map, in the units of ``volume``.
    """
    box = _check_cube(volume)
    if pixel_size_a <= 0 or resolution_a <= 0:
        raise ValueError(
            f"pixel size and resolution must be positive, got {pixel_size_a} and {resolution_a}"
        )
    radius = _radius_px(box)
    squared_frequency_a2 = (radius / (box * pixel_size_a)) ** 2
    filter_ = torch.exp(bfactor_a2 * squared_frequency_a2 / 4.0)
    filter_ = filter_ * _lowpass_gain(radius, box * pixel_size_a / resolution_a, edge_shells)
    if fsc is not None:
        filter_ = filter_ * _shell_weight_grid(fsc, box)
    spectrum = torch.fft.rfftn(torch.as_tensor(volume, dtype=torch.float64))
    logger.info(
        "sharpening with a B-factor of %.1f Å^2, low-pass at %.3g Å%s",
        -bfactor_a2,
        resolution_a,
        ", FSC-weighted" if fsc is not None else "",
    )
    return torch.fft.irfftn(spectrum * filter_, s=volume.shape).numpy().astype(np.float32)


def _noise_sigmas(cut_shell: float, box_px: int) -> float:
    """Noise multiple z that pure noise low-passed at ``cut_shell`` crosses in 5% of boxes."""
    n_independent = min(4.0 * math.pi / 3.0 * cut_shell**3, float(box_px) ** 3)
    return max(MIN_NOISE_SIGMAS, float(stats.norm.isf(NOISE_FALSE_ALARM_RATE / n_independent)))


def _automatic_threshold(lowpassed: np.ndarray, cut_shell: float) -> float:
    """Noise level of a low-passed map (module docstring, *Automatic mask threshold*)."""
    box = lowpassed.shape[0]
    outside = spherical_mask(box, BACKGROUND_RADIUS_FRACTION * box, 0.0) < 0.5
    background = lowpassed[outside]
    median = float(np.median(background))
    noise = MAD_TO_SIGMA * float(np.median(np.abs(background - median)))
    level = median + _noise_sigmas(cut_shell, box) * noise
    return max(level, MIN_THRESHOLD_FRACTION * float(lowpassed.max()))


def _major_components(inside: np.ndarray) -> np.ndarray:
    """`(D, D, D)` bool: the largest connected region and those >= 10% of its volume."""
    labels, count = ndimage.label(inside, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= MIN_COMPONENT_FRACTION * sizes.max()) + 1
    if len(keep) < count:
        logger.info(
            "automatic mask: kept %d of %d connected regions (dropped %d voxels)",
            len(keep),
            count,
            int(sizes.sum() - sizes[keep - 1].sum()),
        )
    return np.isin(labels, keep)


def spherical_fallback_mask(box_px: int, pixel_size_a: float, soft_edge_a: float) -> np.ndarray:
    """`(D, D, D)` float32 soft sphere for a consensus map whose density no threshold finds.

    The sphere is the region the automatic threshold takes for background: radius
    ``0.4 x D`` less the soft edge (``soft_edge_a``), at least ``D / 8``, so that the edge
    stays inside the box. Post-processing, the masked FSCs and local resolution then still
    run (on a map of pure noise they measure no resolution) where no particle was found.
    """
    edge_px = soft_edge_a / pixel_size_a
    radius_px = max(BACKGROUND_RADIUS_FRACTION * box_px - edge_px, box_px / 8)
    return spherical_mask(box_px, radius_px, edge_px).astype(np.float32)


def mask_from_consensus(
    volume: np.ndarray,
    pixel_size_a: float,
    threshold: float | None = None,
    lowpass_a: float = 15.0,
    extend_a: float = 3.0,
    soft_edge_a: float = 6.0,
) -> AutoMask:
    """Soft mask around the density of a consensus map (as ``relion_mask_create``).

    The map is low-passed at ``lowpass_a`` (raised-cosine edge 2 shells wide), binarised
    at ``threshold``, reduced to its major connected regions (the largest one and those
    with at least 10% of its volume, 26-connectivity), grown by ``extend_a`` and given a
    raised-cosine edge ``soft_edge_a`` wide.

    Parameters
    ----------
    volume
        `(D, D, D)` map.
    pixel_size_a
        Voxel size (Å).
    threshold
        Density level of the low-passed map; ``None`` for the automatic level (module
        docstring).
    lowpass_a, extend_a, soft_edge_a
        Low-pass resolution, growth and soft-edge width (Å).

    Raises
    ------
    EmptyMaskError
        If no voxel of the low-passed map exceeds the threshold.
    """
    lowpassed = _lowpass(volume, pixel_size_a, lowpass_a)
    cut_shell = volume.shape[0] * pixel_size_a / lowpass_a
    level = _automatic_threshold(lowpassed, cut_shell) if threshold is None else float(threshold)
    inside = lowpassed > level
    if not inside.any():
        raise EmptyMaskError(level, float(lowpassed.max()), float(lowpass_a))
    kept = _major_components(inside).astype(np.float32)
    mask = mask_from_map(kept, 0.5, extend_a / pixel_size_a, soft_edge_a / pixel_size_a)
    fraction = float((mask >= 0.5).mean())
    logger.info(
        "automatic mask: threshold %.4g%s, %.1f%% of the box",
        level,
        " (automatic)" if threshold is None else "",
        100 * fraction,
    )
    return AutoMask(
        mask=mask,
        threshold=level,
        lowpass_a=float(lowpass_a),
        extend_a=float(extend_a),
        soft_edge_a=float(soft_edge_a),
        volume_fraction=fraction,
    )
