"""Options shared by several stages (standard library only: ``--help`` imports no torch)."""

from __future__ import annotations

import argparse

from dynamight_core.config_cli import add_file_argument, add_run_argument


def add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``."""
    add_run_argument(
        parser,
        "--device",
        "'auto' (CUDA when a GPU is visible), 'cpu' or 'cuda'",
        default="auto",
    )
    add_threads_argument(parser)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads`` (of a CPU-only stage; :func:`add_compute_arguments` includes it)."""
    add_run_argument(
        parser,
        "--threads",
        "CPU threads (default: SLURM_CPUS_PER_TASK, else torch's default)",
        type=int,
        default=None,
    )


def add_checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint-dir``."""
    add_run_argument(
        parser,
        "--checkpoint-dir",
        "folder for the internal checkpoint: a killed run resumes from it; removed on success",
        default=None,
    )


def add_particle_arguments(parser: argparse.ArgumentParser) -> None:
    """``--star`` and ``--project-root``."""
    add_file_argument(parser, "--star", "RELION particle STAR file [config: inputs.particles]")
    add_file_argument(
        parser,
        "--project-root",
        "RELION project folder that relative rlnImageName paths start from "
        "[config: inputs.project_root]",
        default=None,
    )


def add_half_set_arguments(parser: argparse.ArgumentParser, model_help: str) -> None:
    """``--halves``, ``--half`` and ``--model`` of the per-half training stages."""
    add_file_argument(parser, "--halves", "half-set CSV from split-halves")
    add_run_argument(
        parser, "--half", "which half set (1 or 2)", type=int, choices=(1, 2), required=True
    )
    add_file_argument(parser, "--model", model_help)
