"""Stage ``reconstruct``: consensus half maps and full map by Fourier insertion."""

from __future__ import annotations

import argparse

from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.io.files import sha256_file
from dynamight_core.io.mrc import write_volume
from dynamight_core.io.stacks import ImageSource, validate_stacks
from dynamight_core.io.star import read_particles
from dynamight_core.reconstruct.halves import read_halves
from dynamight_core.reconstruct.homogeneous import reconstruct_half_maps
from dynamight_core.stages.common import (
    add_compute_arguments,
    add_particle_arguments,
    compute_device,
)

HELP = "Wiener-filtered Fourier reconstruction of two independent half maps and the full map"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the reconstruction stage."""
    add_particle_arguments(parser)
    parser.add_argument("--halves", required=True, help="half-set CSV from split-halves")
    parser.add_argument("--out-half1", required=True)
    parser.add_argument("--out-half2", required=True)
    parser.add_argument("--out-full", required=True)
    parser.add_argument("--pad", type=int, default=2, help="Fourier padding factor")
    parser.add_argument("--batch-size", type=int, default=64, help="particles per batch")
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        help="folder for the internal checkpoint (resume after a kill); removed on success",
    )
    parser.add_argument(
        "--checkpoint-every", type=int, default=16, help="save the checkpoint every N batches"
    )
    parser.add_argument(
        "--tau2-fudge",
        type=float,
        default=1.0,
        help="multiplies the FSC-derived signal power (RELION's tau2_fudge)",
    )
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Reconstruct and write the three maps (each atomically, all at the end)."""
    particle_set = read_particles(args.star, args.project_root)
    validate_stacks(particle_set)
    halves = read_halves(args.halves, particle_set)
    device = compute_device(args)
    source = ImageSource(particle_set)
    checkpointer = None
    if args.checkpoint_dir:
        settings = {
            "star_sha256": sha256_file(args.star),
            "halves_sha256": sha256_file(args.halves),
            "pad": args.pad,
            "batch_size": args.batch_size,
        }
        checkpointer = Checkpointer(
            args.checkpoint_dir, "reconstruct", settings, args.checkpoint_every
        )
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
    write_volume(args.out_half1, result.half1, pixel)
    write_volume(args.out_half2, result.half2, pixel)
    write_volume(args.out_full, result.full, pixel)
    if checkpointer:
        checkpointer.clear()
