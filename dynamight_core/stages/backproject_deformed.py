"""Stage ``backproject-deformed``: one shard of a half set's deformed backprojection.

Each particle's CTF-weighted image is brought back to the consensus frame through its own
deformation (``deformed.method``) and added; with the same particles' undeformed kernel and
backprojection (for the filter). A half set's particles are split into ``deformed.shards``
contiguous shards, each its own job; stage ``solve-deformed`` adds the shards' sums, which
equal the unsharded sums up to the order of floating-point additions.
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_run_argument, add_section_arguments
from dynamight_core.stages.options import (
    add_checkpoint_argument,
    add_compute_arguments,
    add_half_set_arguments,
    add_particle_arguments,
)

logger = logging.getLogger(__name__)

HELP = "deformed backprojection of one shard of a half set's particles"

SUMS_KIND = "dynamight-deformed-sums"


def add_deformed_inputs(parser: argparse.ArgumentParser) -> None:
    """Inputs shared by the deformed reconstruction's stages."""
    add_particle_arguments(parser)
    add_half_set_arguments(parser, "this half set's trained VAE (train-vae)")
    add_file_argument(parser, "--latents", "this half set's latent table (train-vae)")
    add_file_argument(
        parser,
        "--inverse-model",
        "this half set's inverse network (fit-inverse), for --method inverse",
        default=None,
    )
    add_file_argument(
        parser,
        "--consensus-fit",
        "this half set's consensus fit before VAE training (warmup), for --reference "
        "consensus_fit and the report's state agreement",
        default=None,
    )
    add_run_argument(
        parser,
        "--shuffle-latents-seed",
        "the null control: give each particle a random other particle's latent from this "
        "half set, drawn with this seed (the workflow's null maps; config report.null_seed)",
        type=int,
        default=None,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the sharded backprojection."""
    add_deformed_inputs(parser)
    add_section_arguments(
        parser,
        "deformed",
        only=("method", "reference", "control_grid", "shards", "batch_size", "checkpoint_every"),
    )
    add_run_argument(parser, "--shard", "which shard (1 .. shards)", type=int, default=1)
    add_checkpoint_argument(parser)
    add_file_argument(parser, "--out-sums", "the shard's sums (.pt)")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Backproject the shard's particles and write their sums."""
    import numpy as np
    import torch

    from dynamight_core.errors import InputError
    from dynamight_core.io.files import atomic_path
    from dynamight_core.io.stacks import ImageSource
    from dynamight_core.reconstruct.deformed import backproject
    from dynamight_core.reconstruct.memory import plan_backprojection_batch
    from dynamight_core.stages.common import (
        compute_device,
        deformed_geometry,
        read_checked_particles,
        stage_checkpointer,
    )

    if not 1 <= args.shard <= args.shards:
        raise InputError("--shard", "shard", f"1 .. {args.shards}", str(args.shard))
    particles = read_checked_particles(args)
    device = compute_device(args)
    source = ImageSource(particles)
    rows, geometry = deformed_geometry(args, particles, source, device)
    shard_rows = np.array_split(rows, args.shards)[args.shard - 1]
    logger.info(
        "half set %d, shard %d/%d: %d of %d particles, method %s, support radius %.1f px",
        args.half,
        args.shard,
        args.shards,
        len(shard_rows),
        len(rows),
        args.method,
        geometry.projector.support.radius_px,
    )
    batch_size = plan_backprojection_batch(
        args.batch_size,
        particles.box_px,
        geometry.projector.support.radius_px,
        args.control_grid,
        device,
    )
    settings = {
        key: getattr(args, key)
        for key in (
            "method",
            "reference",
            "control_grid",
            "shards",
            "shard",
            "half",
            "shuffle_latents_seed",
        )
    }
    checkpointer = stage_checkpointer(
        args,
        "backproject-deformed",
        {**settings, "batch_size": args.batch_size},
        {
            "star": args.star,
            "halves": args.halves,
            "model": args.model,
            "latents": args.latents,
            "inverse_model": args.inverse_model,
            "consensus_fit": args.consensus_fit,
        },
        args.checkpoint_every,
    )
    sums = backproject(geometry, rows, shard_rows, batch_size, checkpointer, args.checkpoint_every)
    source.close()
    payload = {"kind": SUMS_KIND, "settings": settings, "sums": sums.state()}
    with atomic_path(args.out_sums) as tmp:
        torch.save(payload, tmp)
    if checkpointer:
        checkpointer.clear()
