"""Stage ``fit-inverse``: one half set's inverse deformation (the paper's inverse network).

Trained on the half set's own forward decoder and latents, no images; its inversion error
on the half set's held-out particles goes into the JSON output. Used by the deformed
reconstruction with ``deformed.method: inverse``.
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_section_arguments
from dynamight_core.stages.options import add_checkpoint_argument, add_compute_arguments

logger = logging.getLogger(__name__)

HELP = "fit one half set's inverse deformation network (for deformed.method: inverse)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the inverse fit."""
    add_file_argument(parser, "--model", "this half set's trained VAE (train-vae)")
    add_file_argument(parser, "--latents", "this half set's latent table (train-vae)")
    add_section_arguments(parser, "inverse")
    add_checkpoint_argument(parser)
    add_file_argument(parser, "--out-model", "the inverse network (.pt)")
    add_file_argument(parser, "--out-json", "inversion errors on held-out particles (JSON)")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Fit the inverse network and report its errors on the held-out particles."""
    from dataclasses import asdict

    import numpy as np
    import pandas as pd

    from dynamight_core.config_cli import settings_from_args
    from dynamight_core.data.latents import check_latents_match_model, read_latent_table
    from dynamight_core.io.files import write_json_atomic
    from dynamight_core.models.inverse import save_inverse
    from dynamight_core.stages.common import compute_device, stage_checkpointer
    from dynamight_core.training.half_set_vae import load_half_set_vae
    from dynamight_core.training.inverse import InverseSettings, fit_inverse, inversion_errors

    device = compute_device(args)
    vae = load_half_set_vae(args.model, device)
    model = vae.model.requires_grad_(False)
    rows = pd.read_csv(args.latents, usecols=["row"])["row"].to_numpy()
    table = read_latent_table(args.latents, rows)
    check_latents_match_model(args.latents, table, args.model, vae)
    train = table.latents[~table.validation].to(device)
    held_out = table.latents[table.validation].to(device)
    if len(held_out) == 0:
        held_out = train
        logger.warning("%s: no validation particles, errors on training ones", args.latents)
    settings = settings_from_args(InverseSettings, args)
    checkpointer = stage_checkpointer(
        args, "fit-inverse", asdict(settings), {"model": args.model, "latents": args.latents}
    )
    net, history = fit_inverse(model, train, settings, checkpointer)
    errors = inversion_errors(model, net, held_out, settings.batch_size)
    logger.info(
        "inverse error on %d held-out particles: %.3f Å RMS (95%%: %.3f Å), first-order field "
        "%.3f Å RMS, for displacements of %.3f Å RMS",
        len(held_out),
        errors["inverse_rms_a"],
        errors["inverse_p95_a"],
        errors["first_order_rms_a"],
        errors["displacement_rms_a"],
    )
    summary = {
        "half": int(vae.half),
        "held_out_particles": len(held_out),
        "training_particles": len(train),
        "errors": {key: round(value, 4) for key, value in errors.items()},
        "final_epoch": history[-1] if history else None,
        "settings": asdict(settings),
        "definition": "inverse: |c(z, y) - x| at the consensus Gaussian centres x of held-out "
        "particles, y = x + d(z, x); first_order: |x - r(z, x) - y|, the field that "
        "deformed.method inverse uses",
    }
    save_inverse(
        args.out_model,
        net,
        model.consensus.box_px,
        {"half": int(vae.half), "history": history, "errors": errors, "rows": int(np.size(rows))},
    )
    write_json_atomic(args.out_json, summary)
    if checkpointer:
        checkpointer.clear()
