"""Stage ``train-vae``: one half set's deformation VAE, trained on that half only."""

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

HELP = "train one half set's deformation VAE (encoder + displacement decoder)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the VAE training."""
    add_particle_arguments(parser)
    add_half_set_arguments(parser, "this half set's warmed-up model (from warmup)")
    add_section_arguments(parser, "vae")
    add_file_argument(
        parser,
        "--atomic-model",
        "PDB/mmCIF docked in the consensus map: regularise with its residue connectivity "
        "instead of the smoothness graph (biases the motions towards the model) "
        "[config: inputs.atomic_model]",
        default=None,
    )
    add_file_argument(
        parser,
        "--store",
        "this half set's particle store (store-particles), read instead of the stacks "
        "[config: store.enabled]",
        default=None,
    )
    add_section_arguments(parser, "store", only=("local_copy",))
    add_checkpoint_argument(parser)
    add_file_argument(parser, "--out-model", "the trained VAE (.pt)")
    add_file_argument(parser, "--out-latents", "latent means and sigmas per particle (CSV)")
    add_file_argument(parser, "--out-history", "training curves (TSV)")
    add_file_argument(parser, "--out-png", "training curves (PNG)")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Train the half set's VAE and write the model, latents and training curves."""
    from dataclasses import asdict, replace
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import torch

    from dynamight_core.config_cli import settings_from_args
    from dynamight_core.data.batches import BatchReader
    from dynamight_core.data.store_images import training_images
    from dynamight_core.device import seed_everything
    from dynamight_core.errors import InputError
    from dynamight_core.io.files import atomic_path
    from dynamight_core.io.identity import fingerprint, input_hashes
    from dynamight_core.io.particle_store import MANIFEST_FILE
    from dynamight_core.metrics.plots import plot_training
    from dynamight_core.models.deformation import VaeArchitecture, build_deformation_model
    from dynamight_core.models.gaussians import load_gaussian_model
    from dynamight_core.stages.common import (
        check_model_matches_particles,
        compute_device,
        read_half_set,
        stage_checkpointer,
    )
    from dynamight_core.training.half_set_vae import HalfSetVae, TrainingGrid, save_half_set_vae
    from dynamight_core.training.likelihood import FourierLikelihood
    from dynamight_core.training.memory_plan import plan_vae_batch
    from dynamight_core.training.regularisation import bonds_from_file
    from dynamight_core.training.vae import VaeSettings, train_vae
    from dynamight_core.training.vae_steps import latent_table, normalise_encoder

    particles, train, validation = read_half_set(args)
    device = compute_device(args)
    consensus, warm = load_gaussian_model(args.model, device)
    check_model_matches_particles(args.model, consensus, particles)
    if "noise_power" not in warm:
        raise InputError(
            args.model,
            "noise_power",
            "a warmed-up model (from the warmup stage)",
            "a model without a noise spectrum",
        )
    bonds = bonds_from_file(args.atomic_model, consensus) if args.atomic_model else None
    settings = settings_from_args(VaeSettings, args)
    architecture = settings_from_args(VaeArchitecture, args)
    grid = TrainingGrid.for_resolution(
        particles.box_px, particles.pixel_size_a, settings.max_resolution_a, architecture.encoder_px
    )
    noise = torch.tensor(warm["noise_power"], device=device)[: grid.box_px // 2 + 1]
    logger.info(
        "half set %d: %d training, %d validation particles; training grid %d px at "
        "%.2f Å/px (to %.1f Å), encoder input %d px",
        args.half,
        len(train),
        len(validation),
        grid.box_px,
        grid.pixel_size_a,
        particles.box_px * particles.pixel_size_a / grid.max_shell,
        grid.encoder_px,
    )
    seed_everything(settings.seed)
    vae = HalfSetVae(
        model=build_deformation_model(consensus, architecture, grid.encoder_px).to(device),
        grid=grid,
        likelihood=FourierLikelihood(noise, grid.box_px, grid.max_shell),
        refinement=settings.refinement(),
        batch_size=settings.batch_size,
        half=args.half,
    )
    vae.batch_size = plan_vae_batch(vae, settings.batch_size, device)
    run_settings = {
        **asdict(settings),
        **asdict(grid),
        "half": args.half,
        "architecture": asdict(architecture),
    }
    run_inputs = {
        "star": args.star,
        "halves": args.halves,
        "model": args.model,
        "atomic_model": args.atomic_model,
        "store": Path(args.store, MANIFEST_FILE) if args.store else None,
    }
    vae.made_from = input_hashes(run_inputs)
    vae.run = fingerprint(run_settings, vae.made_from)
    logger.info("training run %s (half set %d)", vae.run, args.half)
    checkpointer = stage_checkpointer(
        args, "train-vae", run_settings, run_inputs, hashes=vae.made_from
    )
    rows = np.concatenate([train, validation])
    with training_images(particles, rows, grid.box_px, args.store, args.local_copy) as source:
        reader = BatchReader(particles, source, device, crop_px=grid.box_px)
        normalise_encoder(vae.model, reader, train, grid)
        planned = replace(settings, batch_size=vae.batch_size)
        state = train_vae(vae, reader, train, validation, planned, checkpointer, bonds)
        vae.history, vae.stopped = state.history, state.stopped
        known = (
            {}
            if state.validation_latents is None
            else dict(zip(validation.tolist(), state.validation_latents, strict=True))
        )
        table = latent_table(vae, reader, particles, (train, validation), known)
    with atomic_path(args.out_latents) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    history = pd.DataFrame(state.history)
    with atomic_path(args.out_history) as tmp:
        history.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_training(args.out_png, history, f"Deformation VAE, half set {args.half}")
    save_half_set_vae(args.out_model, vae, asdict(settings))
    if checkpointer:
        checkpointer.clear()
