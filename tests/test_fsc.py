"""FSC against analytic expectations."""

from __future__ import annotations

import numpy as np
import pytest

from dynamight_core.geometry.masks import spherical_mask
from dynamight_core.metrics.fsc import (
    FscCurve,
    expected_correlation_with_truth,
    fsc,
    masked_fsc,
    randomise_phases,
)


def test_identical_maps_correlate_fully() -> None:
    volume = np.random.default_rng(0).standard_normal((32, 32, 32))
    curve = fsc(volume, volume, 1.0)
    np.testing.assert_allclose(curve.fsc, 1.0, atol=1e-12)
    assert curve.n_voxels.sum() > 0.9 * 32**3 * 0.52  # the Nyquist sphere, counted in full


def test_signal_plus_noise_gives_snr_over_one_plus_snr() -> None:
    """White signal and white noise of equal power: FSC = 1 / (1 + 1) = 0.5 in every shell."""
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((48, 48, 48))
    curve = fsc(
        signal + rng.standard_normal(signal.shape), signal + rng.standard_normal(signal.shape), 1.0
    )
    outer = curve.fsc[6:]
    standard_error = 1.0 / np.sqrt(curve.n_voxels[6:] / 2)
    assert np.all(np.abs(outer - 0.5) < 4 * standard_error + 0.01)


def test_uncorrelated_maps_average_zero() -> None:
    rng = np.random.default_rng(2)
    curve = fsc(rng.standard_normal((48, 48, 48)), rng.standard_normal((48, 48, 48)), 1.0)
    assert abs(curve.fsc[4:].mean()) < 0.02


def test_resolution_interpolates_crossing() -> None:
    values = np.where(np.arange(33) <= 10, 1.0, 0.0)
    curve = FscCurve(values, np.ones(33, dtype=np.int64), box_px=64, pixel_size_a=1.5)
    crossing = 10 + (1.0 - 0.143) / 1.0
    assert curve.resolution_at(0.143) == pytest.approx(64 * 1.5 / crossing)
    never = FscCurve(np.ones(33), np.ones(33, dtype=np.int64), 64, 1.5)
    assert never.resolution_at(0.143) == pytest.approx(3.0)


def test_randomise_phases_keeps_low_shells_and_amplitudes() -> None:
    volume = np.random.default_rng(3).standard_normal((32, 32, 32))
    randomised = randomise_phases(volume, from_shell=8, seed=0)
    curve = fsc(volume, randomised, 1.0)
    np.testing.assert_allclose(curve.fsc[:8], 1.0, atol=1e-6)
    assert abs(curve.fsc[10:].mean()) < 0.05
    np.testing.assert_allclose(
        np.abs(np.fft.rfftn(randomised)).sum(), np.abs(np.fft.rfftn(volume)).sum(), rtol=0.02
    )


def test_masked_fsc_correction_removes_mask_correlation() -> None:
    """A smooth shared object plus independent noise: its true FSC vanishes at high
    frequency, but a sharp mask multiplies the shared object into sharp shared edges and
    inflates the masked FSC there; the phase-randomisation correction removes that."""
    rng = np.random.default_rng(4)
    box = 48
    axis = np.arange(box) - box // 2
    r2 = axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2
    obj = 20.0 * np.exp(-r2 / (2 * 5.0**2))
    map1 = obj + rng.standard_normal((box,) * 3)
    map2 = obj + rng.standard_normal((box,) * 3)
    mask = spherical_mask(box, 10, 3)
    result = masked_fsc(map1, map2, mask, 1.0)
    outer = slice(result.randomised_from_shell + 2, None)
    inflated = result.masked.fsc[outer].mean()
    assert inflated > 0.1  # the artefact is real ...
    assert abs(result.corrected.fsc[outer].mean()) < min(0.06, inflated / 2)  # ... and removed


def test_expected_correlation_values() -> None:
    np.testing.assert_allclose(
        expected_correlation_with_truth(np.array([0.0, 1 / 3, 1.0])), [0.0, np.sqrt(0.5), 1.0]
    )
