"""Stage ``split-halves``: the two independent half sets, saved for all later stages."""

from __future__ import annotations

import argparse

from dynamight_core.config_cli import add_file_argument, add_section_arguments
from dynamight_core.stages.options import add_particle_arguments

HELP = "assign particles to half sets (rlnRandomSubset if present, else a seeded split)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the split stage."""
    add_particle_arguments(parser)
    add_file_argument(parser, "--out", "half-set CSV to write")
    add_section_arguments(parser, "split")


def run(args: argparse.Namespace) -> None:
    """Validate the particles and write the half-set assignment."""
    from dynamight_core.data.halves import (
        assign_halves,
        assign_validation,
        check_half_set_sizes,
        write_halves,
    )
    from dynamight_core.stages.common import read_checked_particles

    particle_set = read_checked_particles(args)
    halves = assign_halves(particle_set, args.seed)
    validation = assign_validation(halves, args.validation_fraction, args.seed)
    check_half_set_sizes(
        particle_set.star_path,
        halves,
        validation,
        args.min_particles_per_half,
        stop=args.too_few_particles == "stop",
    )
    write_halves(args.out, particle_set, halves, validation)
