"""Write a complete RELION-style dataset with ground truth.

SNR definition: the ratio of the variance of the noise-free, CTF-modulated projection
(pixels inside a disc of the particle's diameter, averaged over particles) to the
variance of the added white Gaussian noise. Images with noise are scaled so the noise
has unit standard deviation (as RELION normalises particles); the ground-truth maps are
scaled by the same factor, so a reconstruction can be compared with them directly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dynamight_core.config_schema import default_of
from dynamight_core.errors import InputError
from dynamight_core.geometry.masks import circular_mask, mask_from_map
from dynamight_core.geometry.rotations import euler_to_matrix, matrix_to_euler
from dynamight_core.io.atomic_model import read_atomic_model
from dynamight_core.io.files import write_json_atomic
from dynamight_core.io.mrc import StackWriter, write_volume
from dynamight_core.io.star import write_star
from dynamight_core.physics.ctf import CtfParameters, compute_ctf
from dynamight_core.physics.render import images_from_fourier, render_projections, render_volume
from dynamight_core.progress import track
from dynamight_core.simulate.motion import HingeMotion, InterpolationMotion, Motion
from dynamight_core.simulate.phantom import two_domain_phantom

logger = logging.getLogger(__name__)

RENDER_CHUNK = 64
SNR_ESTIMATE_PARTICLES = 256
AVERAGE_MAP_STATES = 21


@dataclass(frozen=True)
class SimulationConfig:
    """Parameters of a simulated dataset (units in the names)."""

    n_particles: int = default_of("simulate", "n_particles")
    box_px: int = default_of("simulate", "box_px")
    pixel_size_a: float = default_of("simulate", "pixel_size_a")
    snr: float = default_of("simulate", "snr")
    motion: str = default_of("simulate", "motion")
    max_angle_deg: float = default_of("simulate", "max_angle_deg")
    width_a: float = default_of("simulate", "width_a")
    max_origin_a: float = default_of("simulate", "max_origin_a")
    defocus_min_um: float = default_of("simulate", "defocus_min_um")
    defocus_max_um: float = default_of("simulate", "defocus_max_um")
    astigmatism_max_a: float = default_of("simulate", "astigmatism_max_a")
    voltage_kv: float = default_of("simulate", "voltage_kv")
    cs_mm: float = default_of("simulate", "cs_mm")
    amplitude_contrast: float = default_of("simulate", "amplitude_contrast")
    n_truth_maps: int = default_of("simulate", "n_truth_maps")
    seed: int = default_of("simulate", "seed")
    atomic_model: str | None = default_of("simulate", "atomic_model")
    moving_selection: str | None = default_of("simulate", "moving_selection")
    second_model: str | None = default_of("simulate", "second_model")

    def __post_init__(self) -> None:
        checks = [
            (self.n_particles >= 2, "n_particles", "at least 2", self.n_particles),
            (
                self.box_px >= 16 and self.box_px % 2 == 0,
                "box_px",
                "an even size >= 16",
                self.box_px,
            ),
            (self.pixel_size_a > 0, "pixel_size_a", "a positive size", self.pixel_size_a),
            (
                self.motion in ("hinge", "interpolate", "none"),
                "motion",
                "'hinge', 'interpolate' or 'none'",
                self.motion,
            ),
            (
                self.motion != "interpolate" or self.second_model is not None,
                "second_model",
                "a second atomic model for motion 'interpolate'",
                self.second_model,
            ),
            (self.width_a > 0, "width_a", "a positive width", self.width_a),
            (
                0 < self.defocus_min_um <= self.defocus_max_um,
                "defocus_min_um/defocus_max_um",
                "0 < min <= max",
                (self.defocus_min_um, self.defocus_max_um),
            ),
        ]
        for ok, key, expected, found in checks:
            if not ok:
                raise InputError("simulation settings", key, expected, repr(found))


def _hinge_for_selection(
    positions: np.ndarray, moving: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A hinge point between the two parts and an axis perpendicular to the line joining them."""
    fixed_centre = positions[~moving].mean(axis=0)
    moving_centre = positions[moving].mean(axis=0)
    gaps = torch.cdist(torch.as_tensor(positions[moving]), torch.as_tensor(positions[~moving]))
    contact = positions[moving][(gaps.min(dim=1).values < 10.0).numpy()]
    point = contact.mean(axis=0) if len(contact) else 0.5 * (fixed_centre + moving_centre)
    joining = moving_centre - fixed_centre
    axis = np.cross(joining, [0.0, 0.0, 1.0])
    if np.linalg.norm(axis) < 1e-6 * np.linalg.norm(joining):
        axis = np.cross(joining, [1.0, 0.0, 0.0])
    return point, axis / np.linalg.norm(axis)


def build_model(config: SimulationConfig) -> tuple[np.ndarray, Motion]:
    """Masses `(N,)` and the motion of the built-in phantom or of a user's atomic model."""
    if config.atomic_model is None:
        phantom = two_domain_phantom(config.seed)
        moving = phantom.domains == 1
        motion: Motion = HingeMotion(
            phantom.positions_a,
            moving,
            phantom.hinge_point_a,
            phantom.hinge_axis,
            config.max_angle_deg,
        )
        masses = phantom.masses
    else:
        model = read_atomic_model(config.atomic_model)
        centre = np.average(model.positions_a, axis=0, weights=model.atomic_numbers)
        positions = model.positions_a - centre
        masses = model.atomic_numbers
        if config.second_model is not None:
            other = read_atomic_model(config.second_model)
            if len(other.positions_a) != len(positions):
                raise InputError(
                    other.path,
                    "atoms",
                    f"{len(positions)} heavy atoms (as {model.path.name})",
                    f"{len(other.positions_a)}",
                )
            motion = InterpolationMotion(positions, other.positions_a - centre)
        else:
            selection = config.moving_selection or model.chains[-1]
            moving = model.select(selection)
            point, axis = _hinge_for_selection(positions, moving)
            motion = HingeMotion(positions, moving, point, axis, config.max_angle_deg)
    return masses, motion


def _random_poses(n: int, rng: np.random.Generator) -> np.ndarray:
    """`(n, 3)` RELION Euler angles (degrees) of uniformly distributed rotations."""
    quaternions = rng.standard_normal((n, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    w, x, y, z = quaternions.T
    matrices = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )
    return matrix_to_euler(torch.as_tensor(matrices)).numpy()


def particle_table(config: SimulationConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Poses, origins, CTF parameters, half sets and motion coordinates of every particle."""
    n = config.n_particles
    euler = _random_poses(n, rng)
    defocus_u = rng.uniform(config.defocus_min_um, config.defocus_max_um, n) * 1e4
    astigmatism = rng.uniform(0.0, config.astigmatism_max_a, n)
    subsets = np.resize([1, 2], n)
    rng.shuffle(subsets)
    return pd.DataFrame(
        {
            "rlnImageName": [f"{i + 1:06d}@particles.mrcs" for i in range(n)],
            "rlnOpticsGroup": np.ones(n, dtype=int),
            "rlnAngleRot": euler[:, 0],
            "rlnAngleTilt": euler[:, 1],
            "rlnAnglePsi": euler[:, 2],
            "rlnOriginXAngst": rng.uniform(-config.max_origin_a, config.max_origin_a, n),
            "rlnOriginYAngst": rng.uniform(-config.max_origin_a, config.max_origin_a, n),
            "rlnDefocusU": defocus_u,
            "rlnDefocusV": defocus_u - astigmatism,
            "rlnDefocusAngle": rng.uniform(0.0, 180.0, n),
            "rlnPhaseShift": np.zeros(n),
            "rlnCtfBFactor": np.zeros(n),
            "rlnRandomSubset": subsets,
            "motion_coordinate": rng.uniform(0.0, 1.0, n) if config.motion != "none" else 0.5,
        }
    )


def optics_table(config: SimulationConfig) -> pd.DataFrame:
    """The single optics group of a simulated dataset."""
    return pd.DataFrame(
        {
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnOpticsGroup": [1],
            "rlnVoltage": [config.voltage_kv],
            "rlnSphericalAberration": [config.cs_mm],
            "rlnAmplitudeContrast": [config.amplitude_contrast],
            "rlnImagePixelSize": [config.pixel_size_a],
            "rlnImageSize": [config.box_px],
            "rlnImageDimensionality": [2],
        }
    )


class _Renderer:
    """Renders noise-free CTF-modulated images of the moving model."""

    def __init__(
        self, config: SimulationConfig, masses: np.ndarray, motion: Motion, table: pd.DataFrame
    ) -> None:
        self.config, self.motion, self.table = config, motion, table
        self.masses = torch.as_tensor(masses, dtype=torch.float32)[:, None]
        self.widths = torch.tensor([config.width_a], dtype=torch.float32)

    def images(self, rows: np.ndarray) -> np.ndarray:
        part = self.table.iloc[rows]
        positions = torch.as_tensor(
            self.motion.positions(part["motion_coordinate"].to_numpy()), dtype=torch.float32
        )
        euler = torch.tensor(part[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())
        shifts = -torch.tensor(part[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy())
        ctf = compute_ctf(
            _ctf_parameters(part, self.config), self.config.box_px, self.config.pixel_size_a
        )
        image_ft = render_projections(
            positions,
            self.masses,
            self.widths,
            euler_to_matrix(euler).float(),
            shifts.float(),
            self.config.box_px,
            self.config.pixel_size_a,
            ctf=ctf,
        )
        return images_from_fourier(image_ft, self.config.box_px).numpy()


def _ctf_parameters(part: pd.DataFrame, config: SimulationConfig) -> CtfParameters:
    n = len(part)

    def column(name: str) -> torch.Tensor:
        return torch.tensor(part[name].to_numpy(), dtype=torch.float64)

    def constant(value: float) -> torch.Tensor:
        return torch.full((n,), value, dtype=torch.float64)

    return CtfParameters(
        column("rlnDefocusU"),
        column("rlnDefocusV"),
        column("rlnDefocusAngle"),
        constant(config.voltage_kv),
        constant(config.cs_mm),
        constant(config.amplitude_contrast),
        column("rlnPhaseShift"),
        column("rlnCtfBFactor"),
        constant(1.0),
    )


def particle_radius_a(motion: Motion, config: SimulationConfig) -> float:
    """Radius (Å) of a sphere holding the particle in every state, plus two widths."""
    states = motion.positions(np.array([0.0, 0.5, 1.0]))
    return float(np.linalg.norm(states, axis=-1).max() + 2.0 * config.width_a)


def noise_sigma(renderer: _Renderer, radius_px: float, snr: float) -> float:
    """Noise standard deviation giving the requested SNR (see the module docstring)."""
    count = min(SNR_ESTIMATE_PARTICLES, len(renderer.table))
    disc = circular_mask(renderer.config.box_px, radius_px) > 0.5
    variances = []
    for start in range(0, count, RENDER_CHUNK):
        images = renderer.images(np.arange(start, min(start + RENDER_CHUNK, count)))
        variances.append(images[:, disc].var(axis=1))
    return float(math.sqrt(np.concatenate(variances).mean() / snr))


def write_truth_maps(
    out_dir: Path, config: SimulationConfig, masses: np.ndarray, motion: Motion, scale: float
) -> np.ndarray:
    """Ground-truth maps along the motion, the mid state and the average; returns the average."""
    widths = torch.tensor([config.width_a])
    weights = torch.as_tensor(masses * scale, dtype=torch.float32)[:, None]

    def render(s: float) -> np.ndarray:
        """One state at a time: a batch of 2x-oversampled volumes takes gigabytes."""
        positions = torch.as_tensor(motion.positions(np.array([s]))[0], dtype=torch.float32)
        return render_volume(positions, weights, widths, config.box_px, config.pixel_size_a).numpy()

    n_maps = config.n_truth_maps if config.motion != "none" else 1
    coordinates = np.linspace(0.0, 1.0, n_maps) if n_maps > 1 else np.array([0.5])
    for number, coordinate in enumerate(coordinates):
        write_volume(
            out_dir / "truth" / f"state_{number:02d}.mrc", render(coordinate), config.pixel_size_a
        )
    write_volume(out_dir / "truth" / "mid_state.mrc", render(0.5), config.pixel_size_a)
    grid = np.linspace(0.0, 1.0, AVERAGE_MAP_STATES) if config.motion != "none" else np.array([0.5])
    average = np.zeros((config.box_px,) * 3, dtype=np.float64)
    for coordinate in grid:
        average += render(coordinate) / len(grid)
    write_volume(out_dir / "truth" / "average.mrc", average, config.pixel_size_a)
    return average


def simulate_dataset(config: SimulationConfig, out_dir: Path) -> None:
    """Write particles.star, particles.mrcs, truth.csv, truth/ maps and mask.mrc to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    masses, motion = build_model(config)
    table = particle_table(config, rng)
    renderer = _Renderer(config, masses, motion, table)
    radius_a = particle_radius_a(motion, config)
    if 2 * radius_a > config.box_px * config.pixel_size_a:
        logger.warning(
            "the particle (%.0f Å across) does not fit the %.0f Å box",
            2 * radius_a,
            config.box_px * config.pixel_size_a,
        )
    noisy = math.isfinite(config.snr) and config.snr > 0
    sigma = noise_sigma(renderer, radius_a / config.pixel_size_a, config.snr) if noisy else 0.0
    scale = 1.0 / sigma if noisy else 1.0
    logger.info(
        "%d particles, box %d px at %.2f Å/px, SNR %s (noise sigma %.4g)",
        config.n_particles,
        config.box_px,
        config.pixel_size_a,
        config.snr if noisy else "inf",
        sigma,
    )
    chunks = range(0, config.n_particles, RENDER_CHUNK)
    with StackWriter(
        out_dir / "particles.mrcs", config.n_particles, config.box_px, config.pixel_size_a
    ) as stack:
        images_done = track(
            chunks,
            config.n_particles,
            "simulating images",
            size=lambda start: min(RENDER_CHUNK, config.n_particles - start),
            logger=logger,
        )
        for start in images_done:
            rows = np.arange(start, min(start + RENDER_CHUNK, config.n_particles))
            images = renderer.images(rows)
            if noisy:
                images = images + sigma * rng.standard_normal(images.shape)
            stack.write(start, images * scale)
    average = write_truth_maps(out_dir, config, masses, motion, scale)
    mask = mask_from_map(
        average,
        0.05 * float(average.max()),
        extend_px=6.0 / config.pixel_size_a,
        soft_edge_px=8.0 / config.pixel_size_a,
    )
    write_volume(out_dir / "mask.mrc", mask, config.pixel_size_a)
    _write_tables(out_dir, config, table, masses, motion, sigma, scale, radius_a)


def _write_tables(
    out_dir: Path,
    config: SimulationConfig,
    table: pd.DataFrame,
    masses: np.ndarray,
    motion: Motion,
    sigma: float,
    scale: float,
    radius_a: float,
) -> None:
    truth = table[["rlnImageName", "rlnRandomSubset", "motion_coordinate"]].copy()
    if isinstance(motion, HingeMotion):
        truth["hinge_angle_deg"] = motion.angle_deg(truth["motion_coordinate"].to_numpy())
    truth.to_csv(out_dir / "truth.csv.tmp", index=False)
    (out_dir / "truth.csv.tmp").replace(out_dir / "truth.csv")
    atoms = pd.DataFrame(motion.reference_a, columns=["x_a", "y_a", "z_a"])
    atoms["mass"] = masses
    atoms["moving"] = motion.moving.astype(int)
    atoms.to_csv(out_dir / "truth" / "atoms.csv", index=False)
    metadata = {
        "motion": motion.describe(),
        "config": asdict(config),
        "noise_sigma": sigma,
        "image_scale": scale,
        "particle_radius_a": radius_a,
        "snr_definition": "variance of the noise-free CTF-modulated projection inside a disc "
        "of the particle's diameter, averaged over particles, divided by "
        "the noise variance",
    }
    if isinstance(motion, InterpolationMotion):
        pd.DataFrame(motion.state_b - motion.state_a, columns=["dx_a", "dy_a", "dz_a"]).to_csv(
            out_dir / "truth" / "interpolation_delta.csv", index=False
        )
    write_json_atomic(out_dir / "truth" / "motion.json", metadata)
    star = table.drop(columns=["motion_coordinate"])
    write_star(out_dir / "particles.star", star, optics_table(config))
