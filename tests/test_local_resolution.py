"""Windowed local resolution against maps of known, spatially varying resolution."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from dynamight_core.geometry.masks import spherical_mask
from dynamight_core.metrics.fsc import FscCurve
from dynamight_core.metrics.local_resolution import WINDOW_EDGE_PX, local_resolution

PIXEL_A = 1.06  # not exact in float32
THRESHOLD = 0.143


def _frequency_a(box_px: int) -> np.ndarray:
    """`(D, D, D//2+1)` spatial frequency (1/Å) of every rfft voxel."""
    kz, ky, kx = np.meshgrid(
        np.fft.fftfreq(box_px), np.fft.fftfreq(box_px), np.fft.rfftfreq(box_px), indexing="ij"
    )
    return np.sqrt(kz**2 + ky**2 + kx**2) / PIXEL_A


def _shaped(volume: np.ndarray, cut_a: float, below: float, above: float) -> np.ndarray:
    """``volume`` with its spectrum scaled by ``below`` inside 1/cut_a and ``above`` outside."""
    gain = np.where(_frequency_a(volume.shape[0]) <= 1.0 / cut_a, below, above)
    return np.fft.irfftn(np.fft.rfftn(volume) * gain, s=volume.shape, axes=(0, 1, 2))


def test_two_regions_give_their_cut_offs() -> None:
    """White density in a sphere, cut sharply at 3.5 Å for x < D/2 and at 2.7 Å beyond.

    Noise per half: amplitude 0.3 of the signal's below the cut (FSC 0.92) and ``high``
    above it (FSC 0). A window blurs the spectrum symmetrically about the cut, so there
    each side keeps half its power and the window FSC is ``1 / (1 + 0.3**2 + high**2)``;
    ``high`` makes that the threshold, so the crossing is expected at the cut itself. The
    cuts are at window shells 7.3 and 9.4 (of 12), where the shells hold enough Fourier
    voxels for single windows to be precise to a fraction of a shell.
    """
    box, window = 64, 24
    cuts_a = (3.5, 2.7)
    low = 0.3
    high = np.sqrt(1.0 / THRESHOLD - 1.0 - low**2)
    rng = np.random.default_rng(0)
    right = 0.5 * (1.0 + np.tanh((np.arange(box) - box // 2) / 1.5))[None, None, :]

    def regions(volume: np.ndarray, below: float, above: float) -> np.ndarray:
        left_part = _shaped(volume, cuts_a[0], below, above)
        return (1.0 - right) * left_part + right * _shaped(volume, cuts_a[1], below, above)

    signal = regions(rng.standard_normal((box,) * 3) * spherical_mask(box, 28, 3), 1.0, 0.0)
    half1 = signal + regions(rng.standard_normal(signal.shape), low, high)
    half2 = signal + regions(rng.standard_normal(signal.shape), low, high)
    mask = spherical_mask(box, 28, 2)

    result = local_resolution(half1, half2, PIXEL_A, mask=mask, window_px=window, step_px=4)

    offset = result.centres_px - box // 2
    far_from_seam = np.abs(offset[:, 2]) >= window // 2 + 4
    inside = np.sqrt((offset**2).sum(1)) <= 22
    expected_a = np.where(offset[:, 2] < 0, cuts_a[0], cuts_a[1])
    error_shells = (1.0 / result.values_a - 1.0 / expected_a) * window * PIXEL_A
    checked = far_from_seam & inside
    assert (checked & (offset[:, 2] < 0)).sum() >= 20
    assert (checked & (offset[:, 2] > 0)).sum() >= 20
    assert np.all(np.abs(error_shells[checked]) <= 1.0), error_shells[checked]


def test_identical_halves_give_nyquist_inside_mask() -> None:
    box = 32
    volume = np.random.default_rng(1).standard_normal((box,) * 3).astype(np.float32)
    mask = spherical_mask(box, 9, 3)

    result = local_resolution(volume, volume.copy(), PIXEL_A, mask=mask, window_px=12, step_px=4)

    inside = mask >= 0.5
    nodes = np.arange(0, box, 4)  # D//2 = 16 is a node
    expected_centres = [
        c for c in itertools.product(nodes, nodes, nodes) if mask[c] >= 0.5
    ]  # C order, as the result lists them
    np.testing.assert_array_equal(result.centres_px, np.array(expected_centres))
    np.testing.assert_allclose(result.values_a, 2 * PIXEL_A, rtol=1e-12)
    np.testing.assert_allclose(result.map_a[inside], 2 * PIXEL_A, rtol=1e-6)
    assert np.isnan(result.map_a[~inside]).all()
    assert result.map_a.dtype == np.float32


def _reference_resolution_a(
    half1: np.ndarray, half2: np.ndarray, centre_px: tuple[int, ...], window_px: int
) -> float:
    """One window's resolution computed directly: cut, taper, numpy rfftn, shell sums."""
    half_window = window_px // 2
    padded = [np.pad(h, half_window) for h in (half1, half2)]
    cut = tuple(slice(c, c + window_px) for c in centre_px)  # padded index c is voxel c - W/2
    axis = np.arange(window_px) - half_window
    radius = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    ramp = np.clip((radius - (half_window - WINDOW_EDGE_PX)) / WINDOW_EDGE_PX, 0.0, 1.0)
    taper = 0.5 + 0.5 * np.cos(np.pi * ramp)
    ft1, ft2 = (np.fft.rfftn(p[cut].astype(np.float64) * taper) for p in padded)
    kz, ky, kx = np.meshgrid(
        np.fft.fftfreq(window_px),
        np.fft.fftfreq(window_px),
        np.fft.rfftfreq(window_px),
        indexing="ij",
    )
    shells = np.rint(np.sqrt(kz**2 + ky**2 + kx**2) * window_px).astype(int)
    weights = np.where((kx > 0) & (kx < 0.5), 2.0, 1.0)
    keep = shells <= half_window
    n_shells = half_window + 1

    def shell_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(shells[keep], (values * weights)[keep], minlength=n_shells)

    cross = shell_sum((ft1 * ft2.conj()).real)
    power = shell_sum(np.abs(ft1) ** 2) * shell_sum(np.abs(ft2) ** 2)
    curve = FscCurve(cross / np.sqrt(power), np.ones(n_shells, int), window_px, PIXEL_A)
    return min(curve.resolution_at(THRESHOLD), window_px * PIXEL_A)


def test_batched_windows_match_a_direct_computation() -> None:
    """Every window, including those crossing the box edge, against a per-window reference.

    The signal is smooth and the noise grows along z and x, so the windows' resolutions
    differ (some down to the window-size limit) and a mixed-up window or axis would show.
    """
    box, window, step = 32, 16, 6
    rng = np.random.default_rng(2)
    signal = ndimage.gaussian_filter(rng.standard_normal((box,) * 3), 1.2) * 6.0
    ramp = np.linspace(0.2, 3.0, box)
    noise_scale = ramp[:, None, None] * ramp[None, None, :] + 0.1 * ramp[None, :, None]
    half1 = (signal + noise_scale * rng.standard_normal(signal.shape)).astype(np.float32)
    half2 = (signal + noise_scale * rng.standard_normal(signal.shape)).astype(np.float32)

    result = local_resolution(
        half1, half2, PIXEL_A, window_px=window, step_px=step, batch_windows=7
    )

    nodes = np.arange(4, box, step)  # 16 - 2 * 6 = 4: aligned on D//2
    expected_centres = np.array(list(itertools.product(nodes, nodes, nodes)))
    np.testing.assert_array_equal(result.centres_px, expected_centres)
    reference = [_reference_resolution_a(half1, half2, tuple(c), window) for c in expected_centres]
    assert len(np.unique(np.round(reference, 3))) > 20  # the windows do differ
    assert np.sum(np.array(reference) == window * PIXEL_A) >= 3  # some hit the worst case
    np.testing.assert_allclose(result.values_a, reference, rtol=1e-5)
    at_nodes = result.map_a[tuple(result.centres_px.T)]
    np.testing.assert_allclose(at_nodes, result.values_a, rtol=1e-6)
    np.testing.assert_allclose(
        result.shell_resolutions_a()[1:], window * PIXEL_A / np.arange(1, window // 2 + 1)
    )
    assert result.shell_resolutions_a()[0] == np.inf


def test_rejects_odd_window() -> None:
    volume = np.zeros((16, 16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="even"):
        local_resolution(volume, volume, PIXEL_A, window_px=11)
