"""Consensus reconstruction against the simulator's ground truth."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from dynamight_core.geometry.rotations import euler_to_matrix, matrix_to_euler
from dynamight_core.io.mrc import read_volume
from dynamight_core.io.stacks import ImageSource, validate_stacks
from dynamight_core.io.star import ParticleSet, read_particles
from dynamight_core.metrics.fsc import expected_correlation_with_truth, fsc
from dynamight_core.reconstruct.homogeneous import HalfMapResult, reconstruct_half_maps


def _reconstruct(particles: ParticleSet) -> HalfMapResult:
    validate_stacks(particles)
    source = ImageSource(particles)
    try:
        return reconstruct_half_maps(particles, source, particles.random_subset)
    finally:
        source.close()


def _transposed(particles: ParticleSet) -> ParticleSet:
    matrices = euler_to_matrix(torch.as_tensor(particles.euler_deg)).transpose(-1, -2)
    return dataclasses.replace(particles, euler_deg=matrix_to_euler(matrices).numpy())


CORRUPTIONS = {
    "none": lambda p: p,
    "rotation transposed": _transposed,
    "origin sign flipped": lambda p: dataclasses.replace(p, origin_a=-p.origin_a),
    "CTF sign flipped": lambda p: dataclasses.replace(p, ctf_scale=-p.ctf_scale),
}


def _min_fsc_to_truth(result: HalfMapResult, truth: np.ndarray, pixel: float) -> float:
    """Lowest FSC (full map vs truth) over shells 1 .. 0.8 x Nyquist."""
    curve = fsc(result.full, truth, pixel)
    last = int(0.8 * (len(curve.fsc) - 1))
    return float(curve.fsc[1 : last + 1].min())


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_noise_free_reconstruction_matches_truth(noise_free_dataset: Path, corruption: str) -> None:
    """FSC >= 0.95 in every shell to 0.8 Nyquist; a convention error must break it."""
    particles = CORRUPTIONS[corruption](read_particles(noise_free_dataset / "particles.star"))
    truth = read_volume(noise_free_dataset / "truth" / "state_00.mrc").data
    lowest = _min_fsc_to_truth(_reconstruct(particles), truth, particles.pixel_size_a)
    if corruption == "none":
        assert lowest >= 0.95
    else:
        assert lowest < 0.5, f"{corruption} went unnoticed (min FSC {lowest:.3f})"


def test_noisy_full_map_meets_half_map_prediction(noisy_dataset: Path) -> None:
    """FSC(full, truth) >= sqrt(2 FSC_half / (1 + FSC_half)) - tolerance.

    Tolerance: three combined standard errors. An FSC estimate over a shell with n
    independent complex voxels (half the rfft count, by Friedel symmetry) has standard
    error (1 - F^2) / sqrt(n); it propagates to the prediction through
    dC/dF = 1 / (C (1 + F)^2). Shells where the half-map FSC is below 0.143 are skipped:
    there the square root turns estimator noise into large, meaningless swings.
    """
    particles = read_particles(noisy_dataset / "particles.star")
    result = _reconstruct(particles)
    truth = read_volume(noisy_dataset / "truth" / "state_00.mrc").data
    half = result.fsc.fsc
    versus_truth = fsc(result.full, truth, particles.pixel_size_a)
    predicted = expected_correlation_with_truth(half)
    n_independent = np.maximum(versus_truth.n_voxels / 2.0, 1.0)
    clipped = np.clip(half, 1e-3, 1.0)
    sigma_half = (1 - clipped**2) / np.sqrt(n_independent)
    sigma_predicted = sigma_half / (np.maximum(predicted, 1e-3) * (1 + clipped) ** 2)
    sigma_truth = (1 - versus_truth.fsc**2) / np.sqrt(n_independent)
    tolerance = 3.0 * np.sqrt(sigma_predicted**2 + sigma_truth**2)
    shells = np.flatnonzero((half >= 0.143) & (np.arange(len(half)) >= 1))
    assert len(shells) >= 8, "too few informative shells for a meaningful test"
    shortfall = predicted[shells] - tolerance[shells] - versus_truth.fsc[shells]
    assert shortfall.max() <= 0.0, f"worst shell {shells[shortfall.argmax()]}"
    # the half maps must show real signal: better than 12 Å at FSC 0.143
    assert result.fsc.resolution_at(0.143) < 12.0


def test_half_maps_are_independent(noisy_dataset: Path, tmp_path: Path) -> None:
    """Replacing half 2's images with noise leaves half 1's map bit-identical."""
    data = tmp_path / "data"
    shutil.copytree(noisy_dataset, data)
    original = _reconstruct(read_particles(data / "particles.star"))
    particles = read_particles(data / "particles.star")
    rng = np.random.default_rng(0)
    with mrcfile.open(data / "particles.mrcs", mode="r+") as mrc:
        half2 = np.flatnonzero(particles.random_subset == 2)
        mrc.data[half2] = rng.standard_normal((len(half2), 64, 64)).astype(np.float32)
    changed = _reconstruct(read_particles(data / "particles.star"))
    np.testing.assert_array_equal(changed.half1, original.half1)
    assert not np.array_equal(changed.half2, original.half2)
