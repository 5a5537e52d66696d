"""A RELION dataset of a real protein with a domain motion, rendered by cryoJAX.

The structure is T4 lysozyme (PDB 181L, ``benchmarks/structures/181L.pdb``): one Gaussian
per heavy atom (mass = atomic number, width ``width_a``). Its N-terminal domain (residues
13-59) turns as a rigid body about a hinge axis: the axis passes through the centre of
mass of the hinge residues (58-62, where helix C leaves the N-terminal domain) and is
normal to the plane of the hinge point and the two domains' centres of mass, so the
rotation opens and closes the cleft between the domains (T4 lysozyme's hinge-bending).
Each particle's angle ``theta`` is uniform in ``[-max_angle_deg, +max_angle_deg]`` about the
*mid state*, the ground truth. The mid state is the crystal structure opened by
``open_offset_deg`` (default ``max_angle_deg``): the closed end of the range is then the
crystal structure itself, so no particle pushes the domains into each other (closing the
crystal structure by 10-20° makes tens of atoms overlap). At the default 20° the moving
domain's atoms move up to 9.1 Å (4.9 Å on average) away from the mid state.

Everything else follows ``tests/cryojax_data.py`` (the conventions pinned by
``tests/test_cryojax_conventions.py``): uniform poses, origins within ±4 Å, astigmatic CTFs,
cryoJAX renders on a twice finer grid and the images are Fourier-cropped (band-limited),
the true maps are the band-limited Fourier transforms of the Gaussians, images and maps
are in our per-pixel units and scaled to unit noise variance.

SNR: with ``snr_region="box"`` (the default, as issue 16 states it) the variance of the
noise-free CTF-modulated images over the whole box, averaged over up to 256 particles,
over the noise variance; ``"disc"`` measures it inside a disc of the particle's diameter,
as the project's simulator does (the dataset's ``dataset.json`` gives both).

Written into the folder: ``particles.star`` (optics block, ``rlnRandomSubset`` 1, 2, 1, ...),
``particles.mrcs``, ``truth.mrc`` (mid state), ``truth_end_a.mrc`` and ``truth_end_b.mrc``
(theta = -max and +max), ``truth_average.mrc`` (the map averaged over the motion: what a
perfect consensus reconstruction converges to), ``mask_molecule.mrc``, ``mask_moving.mrc``,
``mask_fixed.mrc`` (soft masks around the atoms of the whole molecule, the moving domain
and the rest, over the whole motion range), ``motion.csv`` (each particle's angle) and
``dataset.json``. Run as a script to write one dataset::

    .venv/bin/python benchmarks/deformed_data.py /tmp/t4l --n-particles 4000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from cryojax_data import (  # noqa: E402
    SNR_ESTIMATE_PARTICLES,
    VOLTAGE_KV,
    GaussianModel,
    Particles,
    _fourier_crop,
    cryojax_pose,
    cryojax_transfer_theory,
    random_particles,
    star_tables,
    true_map,
)

# isort: split
# after cryojax_data, which enables jax's float64
import cryojax.simulator as cxs  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from dynamight_core.io.atomic_model import read_atomic_model  # noqa: E402
from dynamight_core.io.mrc import StackWriter, write_volume  # noqa: E402
from dynamight_core.io.star import write_star  # noqa: E402

logger = logging.getLogger("deformed_data")

FORMAT = 1  # dataset.json's "format": raise when what a dataset holds changes
STRUCTURE = REPO / "benchmarks" / "structures" / "181L.pdb"
PDB_ID = "181L"
MOVING_RESIDUES = (13, 59)  # T4 lysozyme's N-terminal domain
HINGE_RESIDUES = (58, 62)  # where helix C (60-80) leaves the N-terminal domain
WIDTH_A = 1.5
MAX_ANGLE_DEG = 20.0
RENDER_CHUNK = 64
MASK_EXTEND_A = 5.0  # the binary mask: within this distance of an atom
MASK_SOFT_EDGE_PX = 4.0
MASK_ANGLE_STEP_DEG = 2.5  # states sampled over the motion range for the masks


# ---------------------------------------------------------------------------------------------
# Structure and motion
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainStructure:
    """Heavy atoms of a two-domain protein and its hinge.

    Attributes
    ----------
    positions_a
        `(N, 3)` atom positions (x, y, z) of the mid state in Å, its centre of mass at the
        box centre (the origin).
    masses
        `(N,)` atomic numbers (masses in voxel units).
    residues
        `(N,)` residue numbers.
    moving
        `(N,)` True for the atoms of the moving domain.
    hinge_a
        `(3,)` a point of the hinge axis (Å, same frame).
    axis
        `(3,)` unit vector of the hinge axis; a positive angle opens the cleft.
    width_a
        Standard deviation (Å) of every atom's Gaussian.
    open_offset_deg
        Angle by which the mid state is opened from the file's structure.
    source
        The structure file.
    """

    positions_a: np.ndarray
    masses: np.ndarray
    residues: np.ndarray
    moving: np.ndarray
    hinge_a: np.ndarray
    axis: np.ndarray
    width_a: float
    open_offset_deg: float
    source: Path

    @property
    def n_residues(self) -> int:
        """Number of residues with atoms."""
        return len(np.unique(self.residues))

    def positions_at(self, theta_deg: np.ndarray | float) -> np.ndarray:
        """`(B, N, 3)` positions with the moving domain turned by ``theta_deg`` (each of B).

        Angles are relative to the mid state, about :attr:`axis` through :attr:`hinge_a`.
        """
        theta = np.deg2rad(np.atleast_1d(np.asarray(theta_deg, dtype=np.float64)))
        out = np.broadcast_to(self.positions_a, (len(theta), *self.positions_a.shape)).copy()
        out[:, self.moving] = _rotate(self.positions_a[self.moving], self.hinge_a, self.axis, theta)
        return out

    def model(self, theta_deg: float = 0.0, atoms: np.ndarray | None = None) -> GaussianModel:
        """The structure at one angle as a :class:`GaussianModel` (``atoms``: a subset)."""
        positions = self.positions_at(theta_deg)[0]
        chosen = np.ones(len(positions), dtype=bool) if atoms is None else atoms
        return GaussianModel(positions[chosen], self.masses[chosen, None], np.array([self.width_a]))

    def displacement_a(self, theta_deg: float) -> np.ndarray:
        """`(M,)` distances (Å) the moving atoms travel from the mid state at ``theta_deg``."""
        moved = self.positions_at(theta_deg)[0, self.moving]
        return np.linalg.norm(moved - self.positions_a[self.moving], axis=1)

    def radius_a(self, max_angle_deg: float) -> float:
        """Radius (Å) about the box centre holding every atom to 2 widths over the motion."""
        angles = np.linspace(-max_angle_deg, max_angle_deg, 9)
        return float(np.linalg.norm(self.positions_at(angles), axis=-1).max() + 2.0 * self.width_a)


def _rotate(points: np.ndarray, centre: np.ndarray, axis: np.ndarray, theta: np.ndarray):
    """`(B, M, 3)`: ``points`` turned by each angle ``theta`` (rad) about ``axis`` at ``centre``
    (Rodrigues' formula, right-handed)."""
    x = points - centre
    cos = np.cos(theta)[:, None, None]
    sin = np.sin(theta)[:, None, None]
    along = (x @ axis)[None, :, None] * axis
    return centre + cos * x + sin * np.cross(axis, x)[None] + (1.0 - cos) * along


def _centre_of_mass(points: np.ndarray, masses: np.ndarray) -> np.ndarray:
    return (points * masses[:, None]).sum(axis=0) / masses.sum()


def load_structure(
    path: Path = STRUCTURE,
    moving_residues: tuple[int, int] = MOVING_RESIDUES,
    hinge_residues: tuple[int, int] = HINGE_RESIDUES,
    width_a: float = WIDTH_A,
    open_offset_deg: float = 0.0,
) -> DomainStructure:
    """Read a PDB/mmCIF file (gemmi: heavy atoms of the first model) and set up its hinge.

    Parameters
    ----------
    path
        Structure file (one chain is expected; every chain's atoms are used).
    moving_residues
        First and last residue (inclusive) of the moving domain.
    hinge_residues
        First and last residue of the hinge; the axis passes through their centre of mass.
    width_a
        Standard deviation (Å) of every atom's Gaussian. 1.5 Å keeps 3% of an atom's
        amplitude at Nyquist of 1.8 Å pixels (3.6 Å), so the maps have signal to Nyquist,
        and ~1e-6 at Nyquist of the twice finer rendering grid (0.9 Å pixels), so the fine
        grid does not alias (the folded-back part inside the band is below 1e-13).
    open_offset_deg
        The mid state is the file's structure opened by this angle.
    """
    atoms = read_atomic_model(path)
    positions = np.asarray(atoms.positions_a, dtype=np.float64)
    masses = np.asarray(atoms.atomic_numbers, dtype=np.float64)
    residues = np.asarray(atoms.residue_numbers)
    moving = (residues >= moving_residues[0]) & (residues <= moving_residues[1])
    hinge_atoms = (residues >= hinge_residues[0]) & (residues <= hinge_residues[1])
    if not moving.any() or moving.all() or not hinge_atoms.any():
        raise ValueError(
            f"{path}: residues {moving_residues} must select some but not all atoms and "
            f"residues {hinge_residues} some atoms"
        )
    hinge = _centre_of_mass(positions[hinge_atoms], masses[hinge_atoms])
    to_moving = _centre_of_mass(positions[moving], masses[moving]) - hinge
    to_fixed = _centre_of_mass(positions[~moving], masses[~moving]) - hinge
    # normal to the plane of the hinge and both centres of mass, oriented so that a
    # positive angle moves the moving domain away from the fixed one (opens the cleft)
    axis = np.cross(to_fixed, to_moving)
    if np.linalg.norm(axis) < 1e-6 * np.linalg.norm(to_fixed) * np.linalg.norm(to_moving):
        axis = np.cross(to_moving, [1.0, 0.0, 0.0] if abs(to_moving[0]) < 0.9 else [0, 1, 0])
    axis = axis / np.linalg.norm(axis)
    opened = positions.copy()
    if open_offset_deg:
        theta = np.array([np.deg2rad(open_offset_deg)])
        opened[moving] = _rotate(positions[moving], hinge, axis, theta)[0]
    centre = _centre_of_mass(opened, masses)
    return DomainStructure(
        positions_a=opened - centre,
        masses=masses,
        residues=residues,
        moving=moving,
        hinge_a=hinge - centre,
        axis=axis,
        width_a=width_a,
        open_offset_deg=float(open_offset_deg),
        source=Path(path),
    )


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def cryojax_deformed_images(
    structure: DomainStructure,
    theta_deg: np.ndarray,
    particles: Particles,
    box_px: int,
    pixel_size_a: float,
    oversampling: int = 2,
    chunk: int = RENDER_CHUNK,
) -> np.ndarray:
    """CTF-modulated images of each particle's own conformation, rendered by cryoJAX.

    The conventions are those of ``cryojax_data.cryojax_images`` (pose, CTF, the sign,
    ``oversampling`` with a Fourier crop); only the atom positions change per particle.

    Parameters
    ----------
    structure
        The protein.
    theta_deg
        `(B,)` hinge angle of each particle (degrees, about the mid state).
    particles
        RELION parameters of the B images.
    box_px, pixel_size_a
        Image size and pixel size (Å).
    oversampling
        cryoJAX renders on an ``oversampling`` times finer grid; the images are then
        Fourier-cropped to the box (band-limited).
    chunk
        Images per vmapped call (the last chunk is padded, so one compilation serves all).

    Returns
    -------
    np.ndarray
        `(B, D, D)` float64 in cryoJAX's units, density per Å² (times ``pixel_size_a**2``
        for our per-pixel units), box centre at index ``D//2``.
    """
    fine = box_px * oversampling
    amplitudes = jnp.asarray(structure.masses)
    variances = jnp.full(len(structure.masses), structure.width_a**2)

    def one(
        positions: jax.Array,
        euler: jax.Array,
        origin: jax.Array,
        u: jax.Array,
        v: jax.Array,
        angle: jax.Array,
        phase: jax.Array,
    ) -> jax.Array:
        volume = cxs.GaussianMixtureVolume(positions, amplitudes, variances)
        config = cxs.BasicImageConfig((fine, fine), pixel_size_a / oversampling, VOLTAGE_KV)
        integrator = cxs.GaussianMixtureProjection(sampling_mode="point")
        theory = cryojax_transfer_theory(u, v, angle, phase, None)
        image_model = cxs.make_image_model(
            volume, config, cryojax_pose(euler, origin), theory, integrator
        )
        return -image_model.simulate()

    simulate = jax.jit(jax.vmap(one))
    n = len(particles)
    chunk = min(chunk, n)
    out = np.empty((n, box_px, box_px))
    for start in range(0, n, chunk):
        rows = np.arange(start, start + chunk).clip(max=n - 1)  # pad the last chunk
        images = simulate(
            jnp.asarray(structure.positions_at(theta_deg[rows])),
            jnp.asarray(particles.euler_deg[rows]),
            jnp.asarray(particles.origin_a[rows]),
            jnp.asarray(particles.defocus_u_a[rows]),
            jnp.asarray(particles.defocus_v_a[rows]),
            jnp.asarray(particles.defocus_angle_deg[rows]),
            jnp.asarray(particles.phase_shift_deg[rows]),
        )
        images = np.asarray(images, dtype=np.float64)
        images = _fourier_crop(images, box_px) if oversampling > 1 else images
        kept = min(chunk, n - start)
        out[start : start + kept] = images[:kept]
    return out


def signal_variance(clean: np.ndarray, region: str, radius_px: float) -> float:
    """Mean over (up to 256) noise-free images of their variance over the box or a disc."""
    sample = clean[:SNR_ESTIMATE_PARTICLES]
    if region == "box":
        return float(sample.reshape(len(sample), -1).var(axis=1).mean())
    if region != "disc":
        raise ValueError(f"snr_region must be 'box' or 'disc', not {region!r}")
    box = clean.shape[-1]
    axis = np.arange(box) - box // 2
    disc = axis[:, None] ** 2 + axis[None, :] ** 2 <= radius_px**2
    return float(sample[:, disc].var(axis=1).mean())


# ---------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------


def distance_map(points_a: np.ndarray, box_px: int, pixel_size_a: float) -> np.ndarray:
    """`(D, D, D)` distance (Å) from each voxel centre to the nearest of ``points_a``.

    ``points_a``: `(P, 3)` positions (x, y, z) in Å about the box centre (index ``D//2``).
    """
    axis = (np.arange(box_px) - box_px // 2) * pixel_size_a
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    voxels = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    distance, _ = cKDTree(points_a).query(voxels)
    return distance.reshape((box_px,) * 3)


def _raised_cosine_step(t: np.ndarray) -> np.ndarray:
    """0 for t <= 0, 1 for t >= 1, a raised cosine between."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0.0, 1.0))


def motion_masks(
    structure: DomainStructure,
    max_angle_deg: float,
    box_px: int,
    pixel_size_a: float,
    extend_a: float = MASK_EXTEND_A,
    soft_edge_px: float = MASK_SOFT_EDGE_PX,
) -> dict[str, np.ndarray]:
    """Soft masks of the molecule and of its two domains over the whole motion.

    The molecule mask is 1 within ``extend_a`` of an atom in any state of the motion
    (sampled every 2.5° or less) and falls off as a raised cosine over ``soft_edge_px``.
    The domain masks split it: a voxel goes to the domain whose atoms (the moving ones in
    any state, the fixed ones) are nearer, with a raised-cosine transition where the two
    distances differ by less than half the soft edge. ``moving + fixed = molecule``, so
    the fixed mask is "the rest".
    """
    steps = max(1, math.ceil(2.0 * max_angle_deg / MASK_ANGLE_STEP_DEG)) + 1
    states = structure.positions_at(np.linspace(-max_angle_deg, max_angle_deg, steps))
    to_moving = distance_map(states[:, structure.moving].reshape(-1, 3), box_px, pixel_size_a)
    to_fixed = distance_map(structure.positions_a[~structure.moving], box_px, pixel_size_a)
    edge_a = soft_edge_px * pixel_size_a
    molecule = 1.0 - _raised_cosine_step((np.minimum(to_moving, to_fixed) - extend_a) / edge_a)
    moving = _raised_cosine_step(0.5 + (to_fixed - to_moving) / edge_a)
    return {"molecule": molecule, "moving": molecule * moving, "fixed": molecule * (1.0 - moving)}


# ---------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DomainMotionDataset:
    """What :func:`write_domain_motion_dataset` wrote, and how.

    ``folder`` and ``star`` are what ``benchmarks/bench_cryodrgn.py``'s cryoDRGN helpers
    read, so a dataset can be passed to them directly.
    """

    folder: Path
    star: Path
    stack: Path
    truth: Path
    truth_end_a: Path
    truth_end_b: Path
    truth_average: Path
    mask_molecule: Path
    mask_moving: Path
    mask_fixed: Path
    motion: Path
    metadata: Path
    n_particles: int
    n_residues: int
    box_px: int
    pixel_size_a: float
    snr: float
    max_angle_deg: float
    image_scale: float

    @classmethod
    def in_folder(cls, folder: Path) -> DomainMotionDataset:
        """The dataset described by ``folder/dataset.json``."""
        folder = Path(folder)
        info = json.loads((folder / "dataset.json").read_text())
        return cls(
            folder=folder,
            **{key: folder / name for key, name in info["files"].items()},
            n_particles=info["n_particles"],
            n_residues=info["n_residues"],
            box_px=info["box_px"],
            pixel_size_a=info["pixel_size_a"],
            snr=info["snr"] if info["snr"] is not None else math.inf,
            max_angle_deg=info["max_angle_deg"],
            image_scale=info["image_scale"],
        )


FILES = {
    "star": "particles.star",
    "stack": "particles.mrcs",
    "truth": "truth.mrc",
    "truth_end_a": "truth_end_a.mrc",
    "truth_end_b": "truth_end_b.mrc",
    "truth_average": "truth_average.mrc",
    "mask_molecule": "mask_molecule.mrc",
    "mask_moving": "mask_moving.mrc",
    "mask_fixed": "mask_fixed.mrc",
    "motion": "motion.csv",
    "metadata": "dataset.json",
}


def write_domain_motion_dataset(
    folder: Path,
    n_particles: int = 4000,
    snr: float = 0.1,
    seed: int = 0,
    max_angle_deg: float = MAX_ANGLE_DEG,
    box_px: int = 64,
    pixel_size_a: float = 1.8,
    *,
    open_offset_deg: float | None = None,
    structure_path: Path = STRUCTURE,
    moving_residues: tuple[int, int] = MOVING_RESIDUES,
    hinge_residues: tuple[int, int] = HINGE_RESIDUES,
    width_a: float = WIDTH_A,
    snr_region: str = "box",
    oversampling: int = 2,
) -> DomainMotionDataset:
    """Render the dataset with cryoJAX and write it to ``folder`` (see the module docstring).

    Parameters
    ----------
    folder
        Output folder (created).
    n_particles
        Number of images (half of them in each half set).
    snr
        Image SNR (see ``snr_region``); ``math.inf`` or <= 0 for noise-free images.
    seed
        Seed of the particles' poses and CTFs, their hinge angles and the noise.
    max_angle_deg
        Hinge angles are uniform in ``[-max_angle_deg, max_angle_deg]`` about the mid state;
        0 for a dataset without motion (the negative control).
    box_px, pixel_size_a
        Image size D (even) and pixel size (Å).
    open_offset_deg
        The mid state (``truth.mrc``) is the file's structure opened by this angle
        (default ``max_angle_deg``: the closed end of the range is the file's structure).
        Give the motion dataset's value to a control without motion for the same truth.
    structure_path, moving_residues, hinge_residues, width_a
        The protein, its moving domain and hinge, and the atoms' width
        (:func:`load_structure`).
    snr_region
        ``"box"``: the signal variance is taken over the whole box; ``"disc"``: inside a
        disc of the particle's diameter (the project simulator's definition).
    oversampling
        cryoJAX's rendering grid is this many times finer than the box.
    """
    start_time = time.perf_counter()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    offset = max_angle_deg if open_offset_deg is None else open_offset_deg
    structure = load_structure(
        structure_path, moving_residues, hinge_residues, width_a, open_offset_deg=offset
    )
    particle_seed, angle_seed, noise_seed = np.random.SeedSequence(seed).generate_state(3)
    particles = random_particles(n_particles, int(particle_seed))
    theta = np.random.default_rng(angle_seed).uniform(-max_angle_deg, max_angle_deg, n_particles)
    clean = cryojax_deformed_images(structure, theta, particles, box_px, pixel_size_a, oversampling)
    clean *= pixel_size_a**2  # our per-pixel units
    render_seconds = time.perf_counter() - start_time

    radius_a = structure.radius_a(max_angle_deg)
    variance = {
        region: signal_variance(clean, region, radius_a / pixel_size_a)
        for region in ("box", "disc")
    }
    noisy = math.isfinite(snr) and snr > 0
    sigma = math.sqrt(variance[snr_region] / snr) if noisy else 0.0
    scale = 1.0 / sigma if noisy else 1.0
    if noisy:
        clean += sigma * np.random.default_rng(noise_seed).standard_normal(clean.shape)
    paths = {key: folder / name for key, name in FILES.items()}
    with StackWriter(paths["stack"], n_particles, box_px, pixel_size_a) as writer:
        writer.write(0, (clean * scale).astype(np.float32))
    del clean
    write_star(paths["star"], *star_tables(particles, paths["stack"].name, box_px, pixel_size_a))
    pd.DataFrame(
        {
            "particle": np.arange(1, n_particles + 1),
            "theta_deg": theta,
            "half": np.resize([1, 2], n_particles),
        }
    ).to_csv(paths["motion"], index=False)

    def truth(theta_deg: float) -> np.ndarray:
        return true_map(structure.model(theta_deg), box_px, pixel_size_a) * scale

    for key, angle in (
        ("truth", 0.0),
        ("truth_end_a", -max_angle_deg),
        ("truth_end_b", max_angle_deg),
    ):
        write_volume(paths[key], truth(angle), pixel_size_a)
    # the uniform distribution of angles, by the midpoint rule (steps of at most 2.5°)
    steps = max(1, math.ceil(2.0 * max_angle_deg / MASK_ANGLE_STEP_DEG))
    edges = np.linspace(-max_angle_deg, max_angle_deg, steps + 1)
    average = np.mean([truth(a) for a in 0.5 * (edges[1:] + edges[:-1])], axis=0)
    write_volume(paths["truth_average"], average, pixel_size_a)
    masks = motion_masks(structure, max_angle_deg, box_px, pixel_size_a)
    for name, mask in masks.items():
        write_volume(paths[f"mask_{name}"], mask, pixel_size_a)

    displacement = structure.displacement_a(max_angle_deg)
    info = {
        "format": FORMAT,
        "description": (
            "T4 lysozyme (PDB 181L) heavy atoms as Gaussians, rendered by cryoJAX "
            f"{_cryojax_version()}; the N-terminal domain turns about a hinge axis, angles "
            "uniform about the mid state (truth.mrc)"
        ),
        "files": {key: name for key, name in FILES.items()},
        "structure": str(structure_path.relative_to(REPO))
        if structure_path.is_relative_to(REPO)
        else str(structure_path),
        "pdb_id": PDB_ID if structure_path == STRUCTURE else None,
        "n_atoms": len(structure.masses),
        "n_residues": structure.n_residues,
        "moving_residues": list(moving_residues),
        "moving_atoms": int(structure.moving.sum()),
        "hinge_residues": list(hinge_residues),
        "hinge_point_a": structure.hinge_a.tolist(),
        "hinge_axis": structure.axis.tolist(),
        "open_offset_deg": offset,
        "max_angle_deg": max_angle_deg,
        "moving_atom_displacement_at_max_angle_a": {
            "max": float(displacement.max()),
            "mean": float(displacement.mean()),
        },
        "width_a": width_a,
        "n_particles": n_particles,
        "box_px": box_px,
        "pixel_size_a": pixel_size_a,
        "oversampling": oversampling,
        "seed": seed,
        "snr": snr if noisy else None,
        "snr_region": snr_region,
        "snr_box": variance["box"] / sigma**2 if noisy else None,
        "snr_disc": variance["disc"] / sigma**2 if noisy else None,
        "disc_radius_a": radius_a,
        "noise_sigma": sigma,
        "image_scale": scale,
        "mask_extend_a": MASK_EXTEND_A,
        "mask_soft_edge_px": MASK_SOFT_EDGE_PX,
        "mask_volumes_voxels": {name: float(mask.sum()) for name, mask in masks.items()},
        "render_seconds": render_seconds,
        "total_seconds": time.perf_counter() - start_time,
    }
    paths["metadata"].write_text(json.dumps(info, indent=2))
    logger.info(
        "T4 lysozyme dataset in %s: %d particles, hinge ±%g° (moving atoms up to %.1f Å), "
        "SNR %s over the %s (%.0f s)",
        folder,
        n_particles,
        max_angle_deg,
        displacement.max(),
        snr if noisy else "inf",
        snr_region,
        info["total_seconds"],
    )
    return DomainMotionDataset.in_folder(folder)


def state_maps(data: DomainMotionDataset, thetas_deg: np.ndarray) -> dict[float, np.ndarray]:
    """True maps of ``data`` at hinge angles ``thetas_deg`` (0: the mid state, ``truth.mrc``).

    Rebuilt from the dataset's own description (structure, open offset, atom width) and
    scaled as its truth maps; each cached beside the dataset in ``truth_states/``.
    """
    folder = data.folder / "truth_states"
    folder.mkdir(exist_ok=True)
    maps: dict[float, np.ndarray] = {}
    structure = None
    for theta in np.round(np.asarray(thetas_deg, dtype=np.float64), 4).tolist():
        path = folder / f"theta_{theta:+08.4f}.npy"
        if not path.exists():
            if structure is None:
                info = json.loads(data.metadata.read_text())
                where = Path(info["structure"])
                structure = load_structure(
                    where if where.is_absolute() else REPO / where,
                    tuple(info["moving_residues"]),
                    tuple(info["hinge_residues"]),
                    info["width_a"],
                    open_offset_deg=info["open_offset_deg"],
                )
            volume = true_map(structure.model(theta), data.box_px, data.pixel_size_a)
            np.save(path, (volume * data.image_scale).astype(np.float32))
        maps[theta] = np.load(path)
    return maps


def _cryojax_version() -> str:
    import cryojax

    return str(cryojax.__version__)


def dataset_settings(dataset: DomainMotionDataset) -> dict[str, object]:
    """The dataset's parameters, for records (paths as strings)."""
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in asdict(dataset).items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="output folder")
    parser.add_argument("--n-particles", type=int, default=4000)
    parser.add_argument("--snr", type=float, default=0.1, help="<= 0: no noise")
    parser.add_argument("--snr-region", choices=("box", "disc"), default="box")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-angle", type=float, default=MAX_ANGLE_DEG, help="degrees")
    parser.add_argument(
        "--open-offset", type=float, default=None, help="degrees (default: --max-angle)"
    )
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--pixel-size", type=float, default=1.8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_domain_motion_dataset(
        args.folder,
        n_particles=args.n_particles,
        snr=args.snr,
        seed=args.seed,
        max_angle_deg=args.max_angle,
        box_px=args.box,
        pixel_size_a=args.pixel_size,
        open_offset_deg=args.open_offset,
        snr_region=args.snr_region,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
