"""RELION datasets rendered by cryoJAX 0.6, an independent simulator nobody here wrote.

Use :func:`write_cryojax_dataset` for a complete small dataset (STAR with an optics block,
``.mrcs`` stack, the true map, ``rlnRandomSubset``), noise-free or at a given SNR::

    from cryojax_data import write_cryojax_dataset

    data = write_cryojax_dataset(tmp_path, n_particles=2000, snr=0.1, seed=1)
    particle_set = read_particles(data.star)

The pieces are reusable on their own: :func:`random_walk_chain` and
:func:`asymmetric_model` make structures, :func:`random_particles` RELION parameters,
:func:`cryojax_images` renders them, :func:`write_relion_dataset` adds noise and writes
the files (so several noise draws can share one rendering), :func:`true_map` is the
ground truth.

The RELION particle -> cryoJAX mapping (each part pinned by
``tests/test_cryojax_conventions.py``):

* pose: ``EulerAnglePose(-rlnOriginXAngst, -rlnOriginYAngst, -rot, -tilt, -psi)``.
* CTF: ``AstigmaticCTF(defocus=(U + V)/2, astigmatism=U - V, angle=90° - rlnDefocusAngle)``,
  lengths in Å; amplitude contrast and phase shift (degrees) unchanged.
* sign: cryoJAX's CTF is minus RELION's ``-sin(chi)``; CTF-modulated images are negated.
* amplitude: a cryoJAX amplitude ``m`` renders density per Å²; our images (same ``m`` as
  a mass in voxel units) are per pixel, i.e. cryoJAX's times ``pixel_size**2``.

Band limit: with ``oversampling = s > 1`` each image is rendered by cryoJAX on an ``s``
times finer grid (same field of view, so the same Fourier samples and the same CTF at
each of them) and Fourier-cropped to the box, with the Nyquist row and column set to
zero. The images then hold exactly the CTF-modulated projection's Fourier samples
inside the band (up to the fine grid's aliasing, below 1e-10 for Gaussians of >= 1.5 Å
at s = 2 and 1.8 Å pixels), and the true map is the structure's Fourier transform
band-limited the same way (:func:`true_map`), so a perfect reconstruction matches it in
every shell. ``oversampling = 1`` point-samples the Gaussians on the box itself (cryoJAX
``sampling_mode="point"``), which aliases the part of their spectrum beyond Nyquist.

SNR (as the project's simulator defines it): the variance of the noise-free
CTF-modulated images inside a disc of the particle's diameter, averaged over (up to
256) particles, over the variance of the added white Gaussian noise. Noisy images are
scaled to unit noise variance and the true map by the same factor.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import torch

jax.config.update("jax_enable_x64", True)

import cryojax.simulator as cxs  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from cryojax.ndimage import FourierGaussian  # noqa: E402

from dynamight_core.io.mrc import StackWriter, write_volume  # noqa: E402
from dynamight_core.io.star import write_star  # noqa: E402
from dynamight_core.physics.ctf import CtfParameters  # noqa: E402

logger = logging.getLogger(__name__)

VOLTAGE_KV = 300.0
CS_MM = 2.7
AMPLITUDE_CONTRAST = 0.1
RENDER_CHUNK = 256
SNR_ESTIMATE_PARTICLES = 256


# ---------------------------------------------------------------------------------------------
# Structures
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GaussianModel:
    """Isotropic Gaussians in width channels (each Gaussian uses exactly one channel).

    Attributes
    ----------
    positions_a
        `(N, 3)` centres (x, y, z) in Å relative to the box centre.
    masses
        `(N, C)` masses in voxel units (the density integrates to them); one non-zero
        entry per row.
    widths_a
        `(C,)` standard deviations in Å.
    """

    positions_a: np.ndarray
    masses: np.ndarray
    widths_a: np.ndarray

    def torch_args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Positions, masses and widths as float64 tensors (our renderer's arguments)."""
        return (
            torch.as_tensor(self.positions_a),
            torch.as_tensor(self.masses),
            torch.as_tensor(self.widths_a),
        )

    def cryojax_volume(self) -> cxs.GaussianMixtureVolume:
        """The same Gaussians as a cryoJAX volume (amplitude = mass, variance = width²)."""
        channel = self.masses.argmax(axis=1)
        return cxs.GaussianMixtureVolume(
            jnp.asarray(self.positions_a),
            jnp.asarray(self.masses.sum(axis=1)),
            jnp.asarray(self.widths_a[channel] ** 2),
        )

    def radius_a(self) -> float:
        """Radius (Å) of a sphere about the box centre holding every Gaussian to 2 widths."""
        return float(np.linalg.norm(self.positions_a, axis=1).max() + 2.0 * self.widths_a.max())


def asymmetric_model(n: int, box_px: int, pixel_size_a: float, seed: int) -> GaussianModel:
    """``n`` Gaussians with random masses inside radius D/4, widths 1.5 and 2 px."""
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = rng.uniform(0.3, 1.0, (n, 1)) * box_px / 4 * pixel_size_a
    masses = np.zeros((n, 2))
    masses[np.arange(n), np.arange(n) % 2] = rng.uniform(0.5, 2.0, n)
    return GaussianModel(directions * radii, masses, np.array([1.5, 2.0]) * pixel_size_a)


def random_walk_chain(
    n: int,
    radius_a: float,
    seed: int,
    step_a: float = 3.8,
    widths_a: tuple[float, ...] = (2.0, 3.0),
) -> GaussianModel:
    """A compact chain of ``n`` Gaussians: a random walk confined to a sphere.

    Each step has length ``step_a`` (the Cα-Cα distance by default) in a random
    direction that keeps the chain inside ``radius_a`` and at least ``0.8 * step_a`` from
    every earlier Gaussian when such a direction is found in 200 tries. The result has
    no symmetry. Each Gaussian gets a random width channel and a mass in [0.5, 1.5].

    Parameters
    ----------
    n
        Number of Gaussians.
    radius_a
        Radius (Å) of the sphere about the box centre that holds the centres.
    seed
        Seed of the walk, channels and masses.
    step_a
        Distance (Å) between consecutive centres.
    widths_a
        Standard deviations (Å) of the width channels.
    """
    rng = np.random.default_rng(seed)
    points = np.zeros((n, 3))
    for i in range(1, n):
        directions = rng.standard_normal((200, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        candidates = points[i - 1] + step_a * directions
        inside = np.linalg.norm(candidates, axis=1) <= radius_a
        gaps = np.linalg.norm(candidates[:, None, :] - points[None, :i, :], axis=-1).min(axis=1)
        good = inside & (gaps >= 0.8 * step_a)
        pick = np.flatnonzero(good if good.any() else inside)
        points[i] = candidates[pick[0]] if len(pick) else points[i - 1]
    masses = np.zeros((n, len(widths_a)))
    masses[np.arange(n), rng.integers(0, len(widths_a), n)] = rng.uniform(0.5, 1.5, n)
    return GaussianModel(points - points.mean(axis=0), masses, np.asarray(widths_a, dtype=float))


def true_map(model: GaussianModel, box_px: int, pixel_size_a: float) -> np.ndarray:
    """The structure's density band-limited to the box: the map a perfect reconstruction gives.

    Computed from the Gaussians' analytic Fourier transform
    ``m exp(-2 pi i k.p) exp(-2 pi^2 s^2 |k|^2)`` on the ``rfftn`` grid, with the Nyquist
    planes set to zero, in float64.

    Returns
    -------
    np.ndarray
        `(D, D, D)` float64 density per voxel (mass units), indexed (z, y, x), box centre
        at index ``D//2``.
    """
    k_full = np.fft.fftfreq(box_px)  # cycles/voxel
    k_half = np.fft.rfftfreq(box_px)
    index_px = model.positions_a / pixel_size_a + box_px // 2  # (N, 3) x, y, z
    spectrum = np.zeros((box_px, box_px, box_px // 2 + 1), dtype=complex)
    for channel, width_a in enumerate(model.widths_a):
        rows = np.flatnonzero(model.masses[:, channel])
        if not len(rows):
            continue
        sigma2 = (width_a / pixel_size_a) ** 2

        def axis_factor(k: np.ndarray, coordinate: np.ndarray, s2: float = sigma2) -> np.ndarray:
            return np.exp(-2j * np.pi * coordinate[:, None] * k - 2.0 * np.pi**2 * s2 * k**2)

        ex = axis_factor(k_half, index_px[rows, 0]) * model.masses[rows, channel, None]
        ey = axis_factor(k_full, index_px[rows, 1])
        ez = axis_factor(k_full, index_px[rows, 2])
        spectrum += np.einsum("nz,ny,nx->zyx", ez, ey, ex, optimize=True)
    spectrum[box_px // 2, :, :] = 0.0
    spectrum[:, box_px // 2, :] = 0.0
    spectrum[:, :, box_px // 2] = 0.0
    return np.fft.irfftn(spectrum, s=(box_px,) * 3)


# ---------------------------------------------------------------------------------------------
# Particles and images
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Particles:
    """RELION parameters of a batch of particles (float64 arrays of length B)."""

    euler_deg: np.ndarray  # (B, 3) rlnAngleRot, rlnAngleTilt, rlnAnglePsi
    origin_a: np.ndarray  # (B, 2) rlnOriginXAngst, rlnOriginYAngst
    defocus_u_a: np.ndarray
    defocus_v_a: np.ndarray
    defocus_angle_deg: np.ndarray
    phase_shift_deg: np.ndarray
    bfactor_a2: np.ndarray

    def __len__(self) -> int:
        return len(self.euler_deg)

    def ctf_parameters(self) -> CtfParameters:
        """Our CTF parameters (float64, scale 1)."""

        def const(value: float) -> torch.Tensor:
            return torch.full((len(self),), value, dtype=torch.float64)

        def col(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, dtype=torch.float64)

        return CtfParameters(
            col(self.defocus_u_a),
            col(self.defocus_v_a),
            col(self.defocus_angle_deg),
            const(VOLTAGE_KV),
            const(CS_MM),
            const(AMPLITUDE_CONTRAST),
            col(self.phase_shift_deg),
            col(self.bfactor_a2),
            const(1.0),
        )


def random_particles(
    n: int,
    seed: int,
    max_origin_a: float = 4.0,
    defocus_range_a: tuple[float, float] = (8000.0, 15000.0),
    max_astigmatism_a: float = 1000.0,
) -> Particles:
    """Uniform random orientations (zyz Euler angles), origins and astigmatic CTFs.

    Parameters
    ----------
    n
        Number of particles.
    seed
        Seed of every draw.
    max_origin_a
        rlnOriginX/YAngst are uniform in ``[-max_origin_a, max_origin_a]`` Å.
    defocus_range_a
        rlnDefocusU is uniform in this range (Å).
    max_astigmatism_a
        U - V is uniform in ``[0, max_astigmatism_a]`` Å.
    """
    rng = np.random.default_rng(seed)
    euler = np.stack(
        [
            rng.uniform(-180.0, 180.0, n),
            np.rad2deg(np.arccos(rng.uniform(-1.0, 1.0, n))),
            rng.uniform(-180.0, 180.0, n),
        ],
        axis=1,
    )
    defocus_u = rng.uniform(*defocus_range_a, n)
    return Particles(
        euler_deg=euler,
        origin_a=rng.uniform(-max_origin_a, max_origin_a, (n, 2)),
        defocus_u_a=defocus_u,
        defocus_v_a=defocus_u - rng.uniform(0.0, max_astigmatism_a, n),
        defocus_angle_deg=rng.uniform(0.0, 180.0, n),
        phase_shift_deg=np.zeros(n),
        bfactor_a2=np.zeros(n),
    )


def cryojax_pose(euler_deg: jax.Array, origin_a: jax.Array) -> cxs.EulerAnglePose:
    """The RELION particle pose as a cryoJAX pose (see the module docstring)."""
    return cxs.EulerAnglePose(
        -origin_a[0], -origin_a[1], -euler_deg[0], -euler_deg[1], -euler_deg[2]
    )


def cryojax_transfer_theory(
    u_a: jax.Array,
    v_a: jax.Array,
    angle_deg: jax.Array,
    phase_shift_deg: jax.Array,
    bfactor_a2: jax.Array | None,
) -> cxs.ContrastTransferTheory:
    """RELION CTF parameters as a cryoJAX transfer theory (its sign is -RELION's)."""
    ctf = cxs.AstigmaticCTF(
        defocus_in_angstroms=0.5 * (u_a + v_a),
        astigmatism_in_angstroms=u_a - v_a,
        astigmatism_angle=90.0 - angle_deg,
        spherical_aberration_in_mm=CS_MM,
    )
    envelope = None if bfactor_a2 is None else FourierGaussian(1.0, bfactor_a2)
    return cxs.ContrastTransferTheory(
        ctf, envelope, amplitude_contrast_ratio=AMPLITUDE_CONTRAST, phase_shift=phase_shift_deg
    )


def _fourier_crop(images: np.ndarray, box_px: int) -> np.ndarray:
    """`(B, sD, sD)` -> `(B, D, D)`: keep the frequencies below the box's Nyquist."""
    fine = images.shape[-1]
    spectrum = np.fft.rfft2(images)
    half = box_px // 2
    rows = np.r_[0:half, fine - half + 1 : fine]  # ky = 0 .. D/2-1, -(D/2-1) .. -1
    cropped = np.zeros((len(images), box_px, half + 1), dtype=complex)
    cropped[:, np.r_[0:half, half + 1 : box_px], :half] = spectrum[:, rows, :half]
    scale = (fine / box_px) ** 2
    return np.fft.irfft2(cropped, s=(box_px, box_px)) / scale


def cryojax_images(
    model: GaussianModel,
    particles: Particles,
    box_px: int,
    pixel_size_a: float,
    with_ctf: bool,
    oversampling: int = 1,
) -> np.ndarray:
    """Images rendered by cryoJAX, in RELION's sign convention and cryoJAX's units.

    Parameters
    ----------
    model
        The structure.
    particles
        RELION parameters of each image.
    box_px, pixel_size_a
        Box size D and pixel size (Å) of the images.
    with_ctf
        Apply the CTF (and negate, see the module docstring).
    oversampling
        1: point samples on the box. s > 1: rendered on an s-times finer grid and
        Fourier-cropped to the box (band-limited; the module docstring says why).

    Returns
    -------
    np.ndarray
        `(B, D, D)` float64 projected density per Å² (multiply by ``pixel_size_a**2`` for
        our per-pixel units), box centre at index ``D//2``.
    """
    volume = model.cryojax_volume()
    fine = box_px * oversampling

    def one(
        euler: jax.Array,
        origin: jax.Array,
        u: jax.Array,
        v: jax.Array,
        angle: jax.Array,
        phase: jax.Array,
    ) -> jax.Array:
        # made inside the traced function: the config caches its frequency grids, which
        # must not outlive one trace (chunks of another size are traced again)
        config = cxs.BasicImageConfig((fine, fine), pixel_size_a / oversampling, VOLTAGE_KV)
        integrator = cxs.GaussianMixtureProjection(sampling_mode="point")
        theory = cryojax_transfer_theory(u, v, angle, phase, None) if with_ctf else None
        image_model = cxs.make_image_model(
            volume, config, cryojax_pose(euler, origin), theory, integrator
        )
        image = image_model.simulate()
        return -image if with_ctf else image

    simulate = jax.jit(jax.vmap(one))
    chunks = []
    for start in range(0, len(particles), RENDER_CHUNK):
        part = slice(start, start + RENDER_CHUNK)
        images = simulate(
            jnp.asarray(particles.euler_deg[part]),
            jnp.asarray(particles.origin_a[part]),
            jnp.asarray(particles.defocus_u_a[part]),
            jnp.asarray(particles.defocus_v_a[part]),
            jnp.asarray(particles.defocus_angle_deg[part]),
            jnp.asarray(particles.phase_shift_deg[part]),
        )
        images = np.asarray(images, dtype=np.float64)
        chunks.append(_fourier_crop(images, box_px) if oversampling > 1 else images)
    return np.concatenate(chunks)


# ---------------------------------------------------------------------------------------------
# RELION files
# ---------------------------------------------------------------------------------------------


def star_tables(
    p: Particles, stack: str, box_px: int, pixel_size_a: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Particle and optics tables (RELION 3.1) for the images of ``stack`` in order.

    Half sets alternate (``rlnRandomSubset`` 1, 2, 1, ...).
    """
    n = len(p)
    particles = pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@{stack}" for i in range(n)],
            "rlnOpticsGroup": np.ones(n, dtype=int),
            "rlnAngleRot": p.euler_deg[:, 0],
            "rlnAngleTilt": p.euler_deg[:, 1],
            "rlnAnglePsi": p.euler_deg[:, 2],
            "rlnOriginXAngst": p.origin_a[:, 0],
            "rlnOriginYAngst": p.origin_a[:, 1],
            "rlnDefocusU": p.defocus_u_a,
            "rlnDefocusV": p.defocus_v_a,
            "rlnDefocusAngle": p.defocus_angle_deg,
            "rlnPhaseShift": p.phase_shift_deg,
            "rlnCtfBFactor": p.bfactor_a2,
            "rlnRandomSubset": np.resize([1, 2], n),
        }
    )
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnVoltage": [VOLTAGE_KV],
            "rlnSphericalAberration": [CS_MM],
            "rlnAmplitudeContrast": [AMPLITUDE_CONTRAST],
            "rlnImagePixelSize": [pixel_size_a],
            "rlnImageSize": [box_px],
            "rlnImageDimensionality": [2],
        }
    )
    return particles, optics


@dataclass(frozen=True)
class RelionDataset:
    """A dataset written by :func:`write_relion_dataset`.

    Attributes
    ----------
    folder
        Where the files are.
    star
        ``particles.star`` (optics and particles blocks, ``rlnRandomSubset``).
    stack
        ``particles.mrcs``, float32, in the order of the STAR rows.
    truth
        ``truth.mrc``: :func:`true_map` in the images' units (times ``image_scale``).
    model
        The structure.
    particles
        The RELION parameters of every image.
    box_px, pixel_size_a
        Image size and pixel size (Å).
    snr
        The SNR (``math.inf`` when noise-free).
    noise_sigma
        Noise standard deviation in the noise-free images' units (0 when noise-free).
    image_scale
        Factor applied to images and truth (``1 / noise_sigma``, or 1 when noise-free).
    particle_radius_a
        Radius (Å) of the disc the SNR is measured in (:meth:`GaussianModel.radius_a`).
    """

    folder: Path
    star: Path
    stack: Path
    truth: Path
    model: GaussianModel
    particles: Particles
    box_px: int
    pixel_size_a: float
    snr: float
    noise_sigma: float
    image_scale: float
    particle_radius_a: float


def _noise_sigma(clean: np.ndarray, radius_px: float, snr: float) -> float:
    """Noise standard deviation that gives ``snr`` (the module docstring's definition)."""
    box = clean.shape[-1]
    axis = np.arange(box) - box // 2
    disc = axis[:, None] ** 2 + axis[None, :] ** 2 <= radius_px**2
    sample = clean[:SNR_ESTIMATE_PARTICLES][:, disc]
    return float(math.sqrt(sample.var(axis=1).mean() / snr))


def write_relion_dataset(
    folder: Path,
    model: GaussianModel,
    particles: Particles,
    clean_images: np.ndarray,
    pixel_size_a: float,
    snr: float = math.inf,
    noise_seed: int = 0,
) -> RelionDataset:
    """Add noise to rendered images and write STAR, stack and true map.

    Parameters
    ----------
    folder
        Output folder (created).
    model
        The structure the images show.
    particles
        Their RELION parameters.
    clean_images
        `(B, D, D)` noise-free CTF-modulated images in our units (density per pixel, i.e.
        :func:`cryojax_images` times ``pixel_size_a**2``).
    pixel_size_a
        Pixel size (Å).
    snr
        Signal-to-noise ratio (module docstring); ``math.inf`` or 0 for no noise.
    noise_seed
        Seed of the noise.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    box_px = clean_images.shape[-1]
    radius_a = model.radius_a()
    noisy = math.isfinite(snr) and snr > 0
    sigma = _noise_sigma(clean_images, radius_a / pixel_size_a, snr) if noisy else 0.0
    scale = 1.0 / sigma if noisy else 1.0
    images = clean_images
    if noisy:
        rng = np.random.default_rng(noise_seed)
        images = clean_images + sigma * rng.standard_normal(clean_images.shape)
    star, stack, truth = folder / "particles.star", folder / "particles.mrcs", folder / "truth.mrc"
    with StackWriter(stack, len(particles), box_px, pixel_size_a) as writer:
        writer.write(0, (images * scale).astype(np.float32))
    write_star(star, *star_tables(particles, stack.name, box_px, pixel_size_a))
    write_volume(truth, true_map(model, box_px, pixel_size_a) * scale, pixel_size_a)
    logger.info(
        "cryoJAX dataset in %s: %d particles, box %d px at %g Å/px, SNR %s",
        folder,
        len(particles),
        box_px,
        pixel_size_a,
        snr if noisy else "inf",
    )
    return RelionDataset(
        folder,
        star,
        stack,
        truth,
        model,
        particles,
        box_px,
        pixel_size_a,
        snr if noisy else math.inf,
        sigma,
        scale,
        radius_a,
    )


def default_structure(box_px: int, pixel_size_a: float, seed: int) -> GaussianModel:
    """A chain filling a sphere of a quarter of the box's edge (radius), ~1 Gaussian per 200 Å³.

    Widths 2.0 and 3.0 Å: spectrum amplitudes of ~2e-3 and ~5e-7 at 3.6 Å, so the map has
    signal up to Nyquist of 1.8 Å pixels.
    """
    radius_a = 0.25 * box_px * pixel_size_a
    n = max(20, int(4.0 / 3.0 * math.pi * radius_a**3 / 200.0))
    return random_walk_chain(n, radius_a, seed)


def write_cryojax_dataset(
    folder: Path,
    n_particles: int = 2000,
    box_px: int = 64,
    pixel_size_a: float = 1.8,
    snr: float = math.inf,
    seed: int = 0,
    noise_seed: int | None = None,
    model: GaussianModel | None = None,
    oversampling: int = 2,
    defocus_range_a: tuple[float, float] = (8000.0, 15000.0),
) -> RelionDataset:
    """Render a complete small RELION dataset with cryoJAX and write it to ``folder``.

    Writes ``particles.star`` (optics block, ``rlnRandomSubset`` alternating 1/2),
    ``particles.mrcs`` (float32) and ``truth.mrc`` (the band-limited true map in the
    images' units). Poses are uniform, origins within ±4 Å, defocus U uniform in
    ``defocus_range_a`` with up to 0.1 µm astigmatism, 300 kV, Cs 2.7 mm, amplitude
    contrast 0.1. The default pixel size, 1.8 Å, is not exactly representable in float32
    (the MRC header holds 1.79999995 Å).

    Parameters
    ----------
    folder
        Output folder (created).
    n_particles
        Number of images (half of them in each half set).
    box_px
        Image size D (even).
    pixel_size_a
        Pixel size (Å).
    snr
        Image SNR (module docstring); ``math.inf`` (default) for noise-free images.
    seed
        Seed of the structure (when ``model`` is None) and of the particle parameters.
    noise_seed
        Seed of the noise (defaults to ``seed``).
    model
        The structure; default :func:`default_structure` (a random-walk chain).
    oversampling
        cryoJAX renders on an ``oversampling`` times finer grid, then the images are
        Fourier-cropped (band-limited, see the module docstring); 1 point-samples.
    defocus_range_a
        Range (Å) of rlnDefocusU.

    Returns
    -------
    RelionDataset
        Paths and parameters of what was written.
    """
    model = model if model is not None else default_structure(box_px, pixel_size_a, seed)
    particles = random_particles(n_particles, seed + 1, defocus_range_a=defocus_range_a)
    clean = cryojax_images(model, particles, box_px, pixel_size_a, True, oversampling)
    return write_relion_dataset(
        folder,
        model,
        particles,
        clean * pixel_size_a**2,
        pixel_size_a,
        snr,
        seed if noise_seed is None else noise_seed,
    )
