"""Stage ``split-halves``: the two independent half sets, saved for all later stages."""

from __future__ import annotations

import argparse

from dynamight_core.io.stacks import validate_stacks
from dynamight_core.io.star import read_particles
from dynamight_core.reconstruct.halves import assign_halves, assign_validation, write_halves
from dynamight_core.stages.common import add_particle_arguments

HELP = "assign particles to half sets (rlnRandomSubset if present, else a seeded split)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the split stage."""
    add_particle_arguments(parser)
    parser.add_argument("--out", required=True, help="half-set CSV to write")
    parser.add_argument("--seed", type=int, default=0, help="seed when rlnRandomSubset is absent")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="fraction of each half set held out for validation",
    )


def run(args: argparse.Namespace) -> None:
    """Validate the particles and write the half-set assignment."""
    particle_set = read_particles(args.star, args.project_root)
    validate_stacks(particle_set)
    halves = assign_halves(particle_set, args.seed)
    validation = assign_validation(halves, args.validation_fraction, args.seed)
    write_halves(args.out, particle_set, halves, validation)
