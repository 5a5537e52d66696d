"""Arguments shared by several stages."""

from __future__ import annotations

import argparse

import torch

from dynamight_core.device import configure_threads, select_device


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
