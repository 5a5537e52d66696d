"""Post-processing pieces (masked FSC, Guinier fit, sharpening, automatic mask) against
analytic constructions."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from dynamight_core.geometry.masks import spherical_mask
from dynamight_core.metrics.fsc import masked_fsc
from dynamight_core.metrics.sharpening import (
    guinier_fit,
    mask_from_consensus,
    sharpen,
    shell_mean_amplitude,
)

BOX = 64
PIXEL_A = 1.06
BFACTOR_A2 = 80.0
AXES = (0, 1, 2)


def _radius_px(box: int) -> np.ndarray:
    """`(D, D, D//2+1)` radius of every rfft voxel in Fourier pixels."""
    freq = np.fft.fftfreq(box) * box
    rfreq = np.fft.rfftfreq(box) * box
    return np.sqrt(freq[:, None, None] ** 2 + freq[None, :, None] ** 2 + rfreq**2)


def _unit_amplitude_spectrum(seed: int) -> np.ndarray:
    """`(D, D, D//2+1)` Hermitian spectrum with |F| = 1 everywhere and random phases."""
    noise_ft = np.fft.rfftn(np.random.default_rng(seed).standard_normal((BOX,) * 3), axes=AXES)
    return noise_ft / np.abs(noise_ft)


def _blurred_flat_map(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A unit-amplitude map blurred by exp(-B s²/4), and its unblurred spectrum."""
    spectrum = _unit_amplitude_spectrum(seed)
    squared_frequency_a2 = (_radius_px(BOX) / (BOX * PIXEL_A)) ** 2
    blurred_ft = spectrum * np.exp(-BFACTOR_A2 * squared_frequency_a2 / 4)
    return np.fft.irfftn(blurred_ft, s=(BOX,) * 3, axes=AXES), spectrum


# --- 1. masked FSC with phase randomisation -----------------------------------------


MASK_RADIUS_PX, MASK_EDGE_PX = 24, 6


@functools.cache
def _masked_noise_fsc_variance() -> np.ndarray:
    """`(D//2+1,)` variance of the FSC of two independent white-noise maps times the mask.

    With G = FT(m n) for unit white noise n, Cov(G(u), G(v)) = M(u - v) and
    E[G(u) G(v)] = M(u + v), where M = FT(m²). For a shell S (symmetric under u -> -u) the
    numerator sum_S Re(G1 G2*) then has variance sum_{u,v in S} |M(u - v)|², and the
    denominator is about |S| sum m², so var FSC = sum_{u,v in S} |M(u - v)|² / (|S| sum m²)²;
    with no mask this is 1 / |S|. The pair sum is the shell indicator's autocorrelation
    weighted by |M|², done with FFTs. Shell 0 is left at 0 (unused).
    """
    mask = spherical_mask(BOX, MASK_RADIUS_PX, MASK_EDGE_PX).astype(np.float64)
    kernel = np.abs(np.fft.fftn(mask**2)) ** 2
    freq = np.fft.fftfreq(BOX) * BOX
    shells = np.rint(np.sqrt(freq[:, None, None] ** 2 + freq[None, :, None] ** 2 + freq**2))
    variance = np.zeros(BOX // 2 + 1)
    for k in range(1, BOX // 2 + 1):
        indicator = (shells == k).astype(np.float64)
        pairs = np.fft.ifftn(np.abs(np.fft.fftn(indicator)) ** 2).real
        variance[k] = (kernel * pairs).sum() / (indicator.sum() * (mask**2).sum()) ** 2
    return variance


def test_masked_fsc_of_pure_noise_stays_at_the_unmasked_level() -> None:
    rng = np.random.default_rng(11)
    half1, half2 = rng.standard_normal((2, BOX, BOX, BOX))
    mask = spherical_mask(BOX, MASK_RADIUS_PX, MASK_EDGE_PX).astype(np.float64)
    result = masked_fsc(half1, half2, mask, PIXEL_A, seed=3)
    outer = np.arange(BOX // 2 + 1) >= BOX // 8  # beyond 1/4 Nyquist
    n_voxels = result.unmasked.n_voxels[outer].astype(np.float64)
    corrected = result.corrected.fsc[outer]
    unmasked = result.unmasked.fsc[outer]
    assert result.randomised_from_shell + 2 <= BOX // 8  # the correction acts on every shell

    # Null model per shell: masked and randomised FSC independent with the variance above;
    # the corrected value is max(0, masked - randomised) / (1 - randomised), about max(0, X)
    # with X ~ N(0, σ²), σ² = 2 var: mean σ/√(2π), variance σ² (1/2 - 1/(2π)). The unmasked
    # FSC has variance 1 / n per shell.
    sigma = np.sqrt(2.0 * _masked_noise_fsc_variance()[outer])
    clipping_bias = float(np.mean(sigma)) / math.sqrt(2 * math.pi)
    variance = np.sum(sigma**2 * (0.5 - 0.5 / math.pi)) + np.sum(1.0 / n_voxels)
    tolerance = clipping_bias + 4.0 * math.sqrt(variance) / len(sigma)
    assert corrected.mean() <= unmasked.mean() + tolerance

    # No shell passes 0.143 unless noise alone can (4 σ); most shells get the strict bound.
    bound = np.maximum(0.143, 4.0 * sigma)
    assert np.all(corrected <= bound)
    assert np.count_nonzero(bound == 0.143) >= 15


def test_masked_fsc_keeps_a_true_correlation() -> None:
    """Shared white signal plus independent white noise of equal power: the SNR is 1 in
    every shell, with or without the mask, so the masked and the corrected FSC are 0.5."""
    rng = np.random.default_rng(12)
    signal, noise1, noise2 = rng.standard_normal((3, BOX, BOX, BOX))
    mask = spherical_mask(BOX, MASK_RADIUS_PX, MASK_EDGE_PX).astype(np.float64)
    result = masked_fsc(signal + noise1, signal + noise2, mask, PIXEL_A, seed=5)
    outer = np.arange(BOX // 2 + 1) >= BOX // 8
    # var(FSC) ≈ (1 - ρ²)² var_0 at ρ = 0.5, plus 0.5² var_0 of the randomised FSC that the
    # correction subtracts (var_0: the pure-noise variance above)
    null_variance = _masked_noise_fsc_variance()[outer]
    sigma_mean = math.sqrt(np.sum((0.75**2 + 0.25) * null_variance)) / len(null_variance)
    assert abs(result.masked.fsc[outer].mean() - 0.5) < 4 * sigma_mean
    assert abs(result.corrected.fsc[outer].mean() - 0.5) < 4 * sigma_mean


# --- 2. Guinier fit -----------------------------------------------------------------


def test_guinier_fit_recovers_the_blurring_bfactor() -> None:
    blurred, _ = _blurred_flat_map()
    fit = guinier_fit(blurred, PIXEL_A)
    assert fit.bfactor_a2 == pytest.approx(BFACTOR_A2, rel=0.02)
    assert fit.intercept == pytest.approx(0.0, abs=0.05)  # ln 1: unit amplitudes at s = 0
    assert fit.correlation < -0.99
    resolution_a = 1.0 / np.sqrt(fit.squared_frequency_a2)
    np.testing.assert_allclose(resolution_a, BOX * PIXEL_A / np.arange(1, BOX // 2 + 1))
    assert np.all(resolution_a[fit.fitted] <= 10.0)
    assert np.all(resolution_a[~fit.fitted] > 10.0)
    assert fit.fit_to_a == pytest.approx(2 * PIXEL_A)


def test_guinier_fit_range_too_narrow_raises() -> None:
    blurred, _ = _blurred_flat_map()
    with pytest.raises(ValueError, match="at least 3 shells"):
        guinier_fit(blurred, PIXEL_A, fit_from_a=3.0, fit_to_a=2.9)


# --- 3. sharpening ------------------------------------------------------------------


def test_sharpen_restores_a_flat_spectrum() -> None:
    blurred, _ = _blurred_flat_map()
    below_cut = slice(1, BOX // 2 - 1)  # low-pass at Nyquist: gain 1 below shell D/2 - 1
    assert shell_mean_amplitude(blurred)[BOX // 2 - 2] < 0.05  # the input is not flat
    sharpened = sharpen(blurred, PIXEL_A, BFACTOR_A2, resolution_a=2 * PIXEL_A)
    assert sharpened.dtype == np.float32
    assert sharpened.shape == (BOX,) * 3
    np.testing.assert_allclose(shell_mean_amplitude(sharpened)[below_cut], 1.0, rtol=1e-4)


def test_sharpen_applies_fsc_weights_per_shell() -> None:
    spectrum = _unit_amplitude_spectrum(seed=1)
    volume = np.fft.irfftn(spectrum, s=(BOX,) * 3, axes=AXES)
    fsc = np.full(BOX // 2 + 1, 0.6)
    fsc[10] = 0.25
    fsc[20] = -0.01
    fsc[25] = 0.3  # after the first FSC <= 0: weight 0, as in RELION
    sharpened = sharpen(volume, PIXEL_A, 0.0, resolution_a=2 * PIXEL_A, fsc=fsc)
    ratio = np.fft.rfftn(sharpened.astype(np.float64), axes=AXES) / spectrum
    shells = np.rint(_radius_px(BOX))
    np.testing.assert_allclose(ratio[shells == 10], math.sqrt(2 * 0.25 / 1.25), atol=1e-4)
    np.testing.assert_allclose(ratio[shells == 5], math.sqrt(2 * 0.6 / 1.6), atol=1e-4)
    np.testing.assert_allclose(ratio[(shells >= 20) & (shells <= 30)], 0.0, atol=1e-4)


def test_sharpen_lowpass_has_a_raised_cosine_edge() -> None:
    blurred, spectrum = _blurred_flat_map()
    resolution_a, edge_shells = 4.0, 2.0
    cut_shell = BOX * PIXEL_A / resolution_a
    sharpened = sharpen(blurred, PIXEL_A, BFACTOR_A2, resolution_a, edge_shells=edge_shells)
    gain = np.abs(np.fft.rfftn(sharpened.astype(np.float64), axes=AXES) / spectrum)
    radius = _radius_px(BOX)
    np.testing.assert_allclose(gain[radius <= cut_shell - edge_shells / 2], 1.0, atol=1e-4)
    assert np.all(gain[radius >= cut_shell + edge_shells / 2] < 1e-4)
    assert np.all(gain[radius >= cut_shell + edge_shells] < 1e-4)
    at_cut = np.abs(radius - cut_shell) < 0.05
    assert at_cut.any()
    np.testing.assert_allclose(gain[at_cut], 0.5, atol=0.05)


# --- 4. automatic mask --------------------------------------------------------------

MASK_PIXEL_A = 1.5
BLOBS = (((-11, 0, 0), 6.0, 4.0), ((12, 0, 0), 4.0, 3.2))  # centre (px), sigma (px), height
SPECK = ((0, -18, 18), 1.5, 5.0)


def _gaussian(centre: tuple[int, int, int], sigma_px: float, height: float) -> np.ndarray:
    axis = np.arange(BOX) - BOX // 2
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    r2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
    return height * np.exp(-r2 / (2 * sigma_px**2))


def _distance_px(centre: tuple[int, int, int]) -> np.ndarray:
    axis = np.arange(BOX) - BOX // 2
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)


def test_mask_from_consensus_covers_blobs_and_drops_a_speck() -> None:
    """Two Gaussian blobs, a sharp speck and white noise (sigma 1/4 of the highest peak).

    A blob of height h and width sigma crosses level t at r = sigma sqrt(2 ln(h / t)). The
    15 Å low-pass keeps a fraction (4π/3) k_c³ / D³ of the white noise's power
    (k_c = D p / 15 Fourier pixels), and noise stays within 4 of those standard deviations
    around the blobs, so the binary region lies between the radii where the blob equals
    t + 4 sigma_lp and t - 4 sigma_lp. The low-pass lowers blobs of sigma >= 4 px by at
    most 15% (it cuts their spectrum 2 standard deviations out) and widens them by well
    under a pixel.
    """
    noise_sigma = 1.0
    noise = noise_sigma * np.random.default_rng(21).standard_normal((BOX,) * 3)
    volume = sum(_gaussian(*blob) for blob in BLOBS) + _gaussian(*SPECK) + noise
    lowpass_a, extend_a, soft_edge_a = 15.0, 3.0, 6.0
    result = mask_from_consensus(
        volume, MASK_PIXEL_A, lowpass_a=lowpass_a, extend_a=extend_a, soft_edge_a=soft_edge_a
    )
    mask, level = result.mask, result.threshold
    extend_px, soft_px = extend_a / MASK_PIXEL_A, soft_edge_a / MASK_PIXEL_A
    cut_shell = BOX * MASK_PIXEL_A / lowpass_a
    lowpassed_noise = noise_sigma * math.sqrt(4 * math.pi / 3 * cut_shell**3 / BOX**3)
    assert level > 4 * lowpassed_noise  # the construction: noise cannot cross t on its own
    assert mask.shape == (BOX,) * 3
    assert mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0

    far = np.ones(mask.shape, dtype=bool)
    for centre, sigma, height in BLOBS:
        inner_px = sigma * math.sqrt(2 * math.log(0.85 * height / (level + 4 * lowpassed_noise)))
        outer_px = sigma * math.sqrt(2 * math.log(height / (level - 4 * lowpassed_noise))) + 1
        distance = _distance_px(centre)
        assert mask[tuple(np.add(centre, BOX // 2))] >= 0.99
        assert np.all(mask[distance <= inner_px + extend_px] >= 0.99)
        far &= distance > outer_px + extend_px + soft_px
    assert np.all(mask[far] == 0.0)  # no noise specks, and the speck is gone
    assert far[tuple(np.add(SPECK[0], BOX // 2))]

    # The speck alone exceeds the level: it was dropped as a minor connected region.
    alone = mask_from_consensus(_gaussian(*SPECK), MASK_PIXEL_A, threshold=level)
    assert alone.mask[tuple(np.add(SPECK[0], BOX // 2))] == 1.0

    # Soft edge: along the -x ray from the first blob the mask falls monotonically from 1
    # to 0. The distance to the binary region grows by at most 1 px per step, so the edge
    # takes at least soft_px steps (a bumpy surface met obliquely makes it a little longer),
    # and every voxel between the last 1 and the first 0 lies strictly between.
    centre = np.add(BLOBS[0][0], BOX // 2)
    ray = mask[centre[0], centre[1], : centre[2] + 1][::-1]
    assert ray[0] == 1.0 and ray[-1] == 0.0
    assert np.all(np.diff(ray) <= 0.0)
    last_one, first_zero = np.flatnonzero(ray == 1)[-1], np.flatnonzero(ray == 0)[0]
    assert soft_px <= first_zero - last_one <= soft_px + 3
    assert np.all((ray[last_one + 1 : first_zero] > 0) & (ray[last_one + 1 : first_zero] < 1))
    assert result.volume_fraction == pytest.approx(np.mean(mask >= 0.5))


def test_mask_from_consensus_threshold_above_the_map_raises() -> None:
    volume = _gaussian(*BLOBS[0])
    with pytest.raises(ValueError, match="threshold 5"):
        mask_from_consensus(volume, MASK_PIXEL_A, threshold=5.0)
