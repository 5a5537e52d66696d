"""Stage ``warmup``: one half set's global Gaussian parameters against its images."""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from dynamight_core.data.batches import BatchReader
from dynamight_core.device import seed_everything
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.io.files import atomic_path, sha256_file
from dynamight_core.io.stacks import ImageSource
from dynamight_core.models.gaussians import load_gaussian_model, save_gaussian_model
from dynamight_core.stages.common import (
    add_compute_arguments,
    add_particle_arguments,
    check_model_matches_particles,
    compute_device,
    read_half_set,
)
from dynamight_core.training.warmup import WarmupSettings, warm_up

logger = logging.getLogger(__name__)

HELP = "refine one half set's Gaussian positions, masses and widths against its images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the warm-up."""
    add_particle_arguments(parser)
    parser.add_argument("--halves", required=True, help="half-set CSV from split-halves")
    parser.add_argument("--half", type=int, choices=(1, 2), required=True)
    parser.add_argument("--model", required=True, help="this half set's consensus fit")
    defaults = WarmupSettings()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument(
        "--lr-positions",
        type=float,
        default=defaults.lr_positions,
        help="Adam learning rate of positions (box units; the paper's 1e-4)",
    )
    parser.add_argument(
        "--lr-shape",
        type=float,
        default=defaults.lr_shape,
        help="Adam learning rate of log-masses, widths and class weights",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--max-resolution-a",
        type=float,
        default=None,
        help="highest resolution used in the loss (default: Nyquist)",
    )
    parser.add_argument("--noise-particles", type=int, default=defaults.noise_particles)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--out-history", required=True, help="loss per epoch (TSV)")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Warm up one half set's model and write it with its loss history."""
    particle_set, train, validation = read_half_set(args)
    device = compute_device(args)
    model, fit_record = load_gaussian_model(args.model, device)
    check_model_matches_particles(args.model, model, particle_set)
    settings = WarmupSettings(
        epochs=args.epochs,
        lr_positions=args.lr_positions,
        lr_shape=args.lr_shape,
        batch_size=args.batch_size,
        max_resolution_a=args.max_resolution_a,
        noise_particles=args.noise_particles,
        seed=args.seed,
    )
    seed_everything(args.seed)
    checkpointer = None
    if args.checkpoint_dir:
        checkpointer = Checkpointer(
            args.checkpoint_dir,
            "warmup",
            {
                **{k: v for k, v in vars(settings).items()},
                "half": args.half,
                "star_sha256": sha256_file(args.star),
                "halves_sha256": sha256_file(args.halves),
                "model_sha256": sha256_file(args.model),
            },
        )
    logger.info(
        "half set %d: %d training and %d validation particles",
        args.half,
        len(train),
        len(validation),
    )
    source = ImageSource(particle_set)
    result = warm_up(
        model, BatchReader(particle_set, source, device), train, validation, settings, checkpointer
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
