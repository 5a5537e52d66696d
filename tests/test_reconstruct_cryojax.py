"""Consensus reconstruction of noise-free cryoJAX data against the true map, to 0.9 Nyquist.

The data (``tests/cryojax_data.py``) are band-limited CTF-modulated projections of a
random-walk chain of Gaussians rendered by cryoJAX, an independent simulator, with the
true map band-limited the same way: a perfect reconstruction matches it in every shell.
Defocus is 1.5-3 µm, so the CTF of the most defocused particles turns by more than pi
between neighbouring Fourier pixels beyond shell ``(D px)^2 / (2 lambda df)`` ~ 11 of
this 64 px box: there, a CTF evaluated anywhere but on the image's own Fourier samples
(for instance on a zero-padded image's interpolated half-integer samples) is wrong.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cryojax.simulator")

from cryojax_data import RelionDataset, write_cryojax_dataset

from dynamight_core.io.mrc import read_volume
from dynamight_core.io.stacks import ImageSource, validate_stacks
from dynamight_core.io.star import read_particles
from dynamight_core.metrics.fsc import fsc
from dynamight_core.reconstruct.homogeneous import reconstruct_half_maps

BOX = 64
PIXEL = 1.8  # not exactly representable in float32
PAD = 2
DEFOCUS_RANGE_A = (15000.0, 30000.0)
ELECTRON_WAVELENGTH_300KV_A = 0.019687


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> RelionDataset:
    """2,000 noise-free particles (1,000 per half), box 64 at 1.8 Å."""
    return write_cryojax_dataset(
        tmp_path_factory.mktemp("cryojax_noise_free"),
        n_particles=2000,
        box_px=BOX,
        pixel_size_a=PIXEL,
        seed=3,
        defocus_range_a=DEFOCUS_RANGE_A,
    )


def _full_map(star: Path) -> np.ndarray:
    particles = read_particles(star)
    validate_stacks(particles)
    source = ImageSource(particles)
    try:
        return reconstruct_half_maps(particles, source, particles.random_subset, pad=PAD).full
    finally:
        source.close()


def gridding_bound(radius_px: float, box_px: int, pad: int) -> float:
    """Lowest FSC with the truth that exact samples and trilinear gridding allow.

    The trilinear kernel's real-space transform on the ``pad * D`` grid, ``sinc^2(x / G)``
    per axis, attenuates the particle by at most ``1 - sinc^2(R / G)`` at its radius R
    before the gridding correction divides it out. Taking the whole attenuation, summed
    over the three axes, as the relative error ``e`` left after the correction gives
    ``FSC >= 1 / sqrt(1 + e^2)``.
    """
    attenuation = 1.0 - np.sinc(radius_px / (pad * box_px)) ** 2
    error = 3.0 * attenuation
    return float(1.0 / math.sqrt(1.0 + error**2))


def test_noise_free_cryojax_reconstruction_every_shell(dataset: RelionDataset) -> None:
    """FSC(full map, truth) above the gridding bound in every shell 1 .. 0.9 Nyquist."""
    truth = read_volume(dataset.truth).data
    curve = fsc(_full_map(dataset.star), truth, PIXEL).fsc
    last = math.floor(0.9 * BOX / 2)
    # the shells checked reach well past the one where the CTF turns by pi per pixel
    pi_shell = (BOX * PIXEL) ** 2 / (2.0 * ELECTRON_WAVELENGTH_300KV_A * DEFOCUS_RANGE_A[1])
    assert last > 2 * pi_shell
    bound = gridding_bound(dataset.particle_radius_a / PIXEL, BOX, PAD)  # 0.97 here
    worst = int(np.argmin(curve[1 : last + 1])) + 1
    assert curve[worst] >= bound, (
        f"shell {worst}: FSC {curve[worst]:.4f} < {bound:.4f}; curve {np.round(curve, 3)}"
    )
