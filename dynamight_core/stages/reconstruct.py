"""Stage ``reconstruct``: consensus half maps and full map by Fourier insertion."""

from __future__ import annotations

import argparse

from dynamight_core.config_cli import add_file_argument, add_section_arguments
from dynamight_core.stages.options import (
    add_checkpoint_argument,
    add_compute_arguments,
    add_particle_arguments,
)

HELP = "Wiener-filtered Fourier reconstruction of two independent half maps and the full map"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the reconstruction stage."""
    add_particle_arguments(parser)
    add_file_argument(parser, "--halves", "half-set CSV from split-halves")
    add_file_argument(parser, "--out-half1", "half map 1 (MRC)")
    add_file_argument(parser, "--out-half2", "half map 2 (MRC)")
    add_file_argument(parser, "--out-full", "map of all particles (MRC)")
    add_section_arguments(parser, "reconstruct")
    add_checkpoint_argument(parser)
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Reconstruct and write the three maps (each atomically, all at the end)."""
    from dynamight_core.data.halves import read_halves
    from dynamight_core.io.identity import MapOrigin, split_id
    from dynamight_core.io.mrc import write_volume
    from dynamight_core.io.stacks import ImageSource
    from dynamight_core.reconstruct.homogeneous import reconstruct_half_maps
    from dynamight_core.stages.common import (
        compute_device,
        read_checked_particles,
        stage_checkpointer,
    )

    particle_set = read_checked_particles(args)
    halves = read_halves(args.halves, particle_set)
    device = compute_device(args)
    checkpointer = stage_checkpointer(
        args,
        "reconstruct",
        {"pad": args.pad, "batch_size": args.batch_size},
        {"star": args.star, "halves": args.halves},
        args.checkpoint_every,
    )
    source = ImageSource(particle_set)
    result = reconstruct_half_maps(
        particle_set,
        source,
        halves,
        pad=args.pad,
        batch_size=args.batch_size,
        device=device,
        tau2_fudge=args.tau2_fudge,
        checkpointer=checkpointer,
    )
    source.close()
    pixel = particle_set.pixel_size_a
    split = split_id(args.halves)
    write_volume(args.out_half1, result.half1, pixel, MapOrigin("consensus", 1, split))
    write_volume(args.out_half2, result.half2, pixel, MapOrigin("consensus", 2, split))
    write_volume(args.out_full, result.full, pixel, MapOrigin("consensus", 0, split))
    if checkpointer:
        checkpointer.clear()
