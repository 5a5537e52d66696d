"""Arguments shared by several stages."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from dynamight_core.device import configure_threads, select_device
from dynamight_core.errors import InputError
from dynamight_core.io.stacks import validate_stacks
from dynamight_core.io.star import ParticleSet, read_particles
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.reconstruct.halves import read_split


def add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``."""
    parser.add_argument(
        "--device", default="auto", help="'auto' (CUDA when a GPU is visible), 'cpu' or 'cuda'"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads (default: SLURM_CPUS_PER_TASK, else torch's default)",
    )


def add_particle_arguments(parser: argparse.ArgumentParser) -> None:
    """``--star`` and ``--project-root``."""
    parser.add_argument("--star", required=True, help="RELION particle STAR file")
    parser.add_argument(
        "--project-root",
        default=None,
        help="RELION project directory for relative rlnImageName paths",
    )


def compute_device(args: argparse.Namespace) -> torch.device:
    """Configure threads and pick the device from parsed arguments."""
    configure_threads(args.threads)
    return select_device(args.device)


def read_half_set(
    args: argparse.Namespace,
) -> tuple[ParticleSet, np.ndarray, np.ndarray]:
    """The particles (stacks checked) and the training and validation rows of ``args.half``.

    Fails before any compute when the half set holds out no validation particles.
    """
    particles = read_particles(args.star, args.project_root)
    validate_stacks(particles)
    train, validation = read_split(args.halves, particles, args.half)
    if validation.size == 0:
        raise InputError(
            args.halves,
            "validation",
            f"held-out particles in half set {args.half}",
            "none",
            "Re-run split-halves with a validation fraction above 0.",
        )
    return particles, train, validation


PIXEL_SIZE_RTOL = 1e-4


def check_model_matches_particles(
    model_path: str | Path, model: GaussianModel, particles: ParticleSet
) -> None:
    """Fail unless a Gaussian model was made on the particles' box and pixel size.

    Pixel sizes come from float32 MRC headers and from STAR text, so they are compared
    with a relative tolerance (``PIXEL_SIZE_RTOL``), never exactly: 1.8 Å comes back from
    a header as 1.7999999523 Å.
    """
    same_box = model.box_px == particles.box_px
    same_pixel = math.isclose(model.pixel_size_a, particles.pixel_size_a, rel_tol=PIXEL_SIZE_RTOL)
    if not (same_box and same_pixel):
        raise InputError(
            model_path,
            "box and pixel size",
            f"{particles.box_px} px at {particles.pixel_size_a:.6g} Å (the particles)",
            f"{model.box_px} px at {model.pixel_size_a:.6g} Å",
        )
