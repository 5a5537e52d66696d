"""Stage ``store-particles``: one half set's particles as a store the VAE training streams."""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_run_argument, add_section_arguments
from dynamight_core.stages.options import add_particle_arguments, add_threads_argument

logger = logging.getLogger(__name__)

HELP = (
    "write one half set's particles, Fourier-cropped to the VAE's training grid, into one "
    "contiguous store (read by train-vae instead of the .mrcs stacks)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the store: the particles, the half set and the training grid's settings."""
    add_particle_arguments(parser)
    add_file_argument(parser, "--halves", "half-set CSV from split-halves")
    add_run_argument(
        parser, "--half", "which half set (1 or 2)", type=int, choices=(1, 2), required=True
    )
    add_section_arguments(parser, "store", only=("precision",))
    # the training grid is train-vae's: the same settings make the same crop
    add_section_arguments(parser, "vae", only=("max_resolution_a", "encoder_px"))
    add_run_argument(
        parser,
        "--chunk-particles",
        "particles read and transformed at a time (memory: a few chunks of full images)",
        type=int,
        default=256,
    )
    add_file_argument(parser, "--out", "the store folder to write (replaced atomically)")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> None:
    """Read the half set's images from the stacks and write its store."""
    from dynamight_core.data.store_images import store_layout, write_half_set_store
    from dynamight_core.device import configure_threads
    from dynamight_core.stages.common import half_set_rows, read_checked_particles
    from dynamight_core.training.half_set_vae import TrainingGrid

    configure_threads(args.threads)
    particles = read_checked_particles(args)
    rows = half_set_rows(args, particles)
    grid = TrainingGrid.for_resolution(
        particles.box_px, particles.pixel_size_a, args.max_resolution_a, args.encoder_px
    )
    layout = store_layout(particles, grid.box_px, args.precision)
    logger.info(
        "half set %d: %d particles of %d px stored on the %d px training grid (%.2f Å/px), %s",
        args.half,
        len(rows),
        particles.box_px,
        grid.box_px,
        grid.pixel_size_a,
        args.precision,
    )
    write_half_set_store(args.out, particles, rows, layout, args.chunk_particles)
