"""Stage ``warmup``: one half set's global Gaussian parameters against its images."""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_section_arguments
from dynamight_core.stages.options import (
    add_checkpoint_argument,
    add_compute_arguments,
    add_half_set_arguments,
    add_particle_arguments,
)

logger = logging.getLogger(__name__)

HELP = "refine one half set's Gaussian positions, masses and widths against its images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the warm-up."""
    add_particle_arguments(parser)
    add_half_set_arguments(parser, "this half set's consensus fit (from fit-consensus)")
    add_section_arguments(parser, "warmup")
    add_checkpoint_argument(parser)
    add_file_argument(parser, "--out-model", "the warmed-up model (.pt)")
    add_file_argument(parser, "--out-history", "loss per epoch (TSV)")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Warm up one half set's model and write it with its loss history."""
    from dataclasses import asdict, replace

    import pandas as pd

    from dynamight_core.config_cli import settings_from_args
    from dynamight_core.data.batches import BatchReader
    from dynamight_core.device import seed_everything
    from dynamight_core.io.files import atomic_path
    from dynamight_core.io.stacks import ImageSource
    from dynamight_core.models.gaussians import load_gaussian_model, save_gaussian_model
    from dynamight_core.stages.common import (
        check_model_matches_particles,
        compute_device,
        read_half_set,
        stage_checkpointer,
    )
    from dynamight_core.training.memory_plan import plan_warmup_batch
    from dynamight_core.training.warmup import WarmupSettings, warm_up

    particle_set, train, validation = read_half_set(args)
    device = compute_device(args)
    model, fit_record = load_gaussian_model(args.model, device)
    check_model_matches_particles(args.model, model, particle_set)
    settings = settings_from_args(WarmupSettings, args)
    seed_everything(settings.seed)
    checkpointer = stage_checkpointer(
        args,
        "warmup",
        {**asdict(settings), "half": args.half},
        {"star": args.star, "halves": args.halves, "model": args.model},
    )
    logger.info(
        "half set %d: %d training and %d validation particles",
        args.half,
        len(train),
        len(validation),
    )
    planned = replace(settings, batch_size=plan_warmup_batch(model, settings.batch_size, device))
    source = ImageSource(particle_set)
    result = warm_up(
        model, BatchReader(particle_set, source, device), train, validation, planned, checkpointer
    )
    source.close()
    history = pd.DataFrame(result.history)
    extra = {
        "half": args.half,
        "noise_power": result.noise_power.tolist(),
        "max_shell": result.max_shell,
        "image_scale": result.scale,
        "validation_loss_before": result.validation_before,
        "history": result.history,
        "fit": fit_record,
    }
    save_gaussian_model(args.out_model, model, extra)
    with atomic_path(args.out_history) as tmp:
        history.assign(validation_loss_before=result.validation_before).to_csv(
            tmp, sep="\t", index=False, float_format="%.6g"
        )
    if checkpointer:
        checkpointer.clear()
