"""Stage ``latent-space``: a half set's latent space, for the report.

PCA of the particles' refined latent means (scatter with density), the half set's model
projected at -2 .. +2 standard deviations along PC1 and PC2 (along the axis in which PC1
moves it least), and each pseudo-atom's RMS
displacement over the particles drawn on the model.
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument
from dynamight_core.stages.explore_options import add_alignment_argument
from dynamight_core.stages.options import add_compute_arguments

logger = logging.getLogger(__name__)

HELP = "PCA of a half set's latent space, the model along PC1/PC2, displacement per atom"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the latent-space summary."""
    add_file_argument(parser, "--model", "the half set's trained VAE (train-vae)")
    add_file_argument(parser, "--latents", "the half set's latent table (train-vae)")
    add_file_argument(parser, "--out-png", "PCA and renders along PC1/PC2 (PNG)")
    add_file_argument(parser, "--out-displacement-png", "RMS displacement per atom (PNG)")
    add_file_argument(parser, "--out-json", "explained variance, displacement summary (JSON)")
    add_alignment_argument(parser)
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Compute the PCA and renders and write the figures and numbers."""
    import numpy as np

    from dynamight_core.data.latents import check_latents_match_model, read_latent_means
    from dynamight_core.io.files import write_json_atomic
    from dynamight_core.report.figures import plot_latent_space, plot_on_model
    from dynamight_core.report.latent import (
        STEPS_SD,
        displacement_rms_a,
        renders_along,
    )
    from dynamight_core.stages.common import compute_device
    from dynamight_core.stages.explore_options import oriented_pca
    from dynamight_core.training.half_set_vae import load_half_set_vae

    device = compute_device(args)
    vae = load_half_set_vae(args.model, device)
    model = vae.model.requires_grad_(False)
    table, latents = read_latent_means(args.latents)
    check_latents_match_model(args.latents, table, args.model, vae)
    pca, orientation = oriented_pca(args, latents, vae.half)
    renders, along = renders_along(model, pca)
    label = f"half set {vae.half}"
    plot_latent_space(
        args.out_png, pca.scores[:, :2], pca.explained, renders, STEPS_SD, label, along
    )
    rms = displacement_rms_a(model, latents)
    positions = model.consensus.positions_a().detach().cpu().numpy()
    plot_on_model(args.out_displacement_png, positions, {f"{label}: RMS displacement": rms})
    summary = {
        "half": vae.half,
        "particles": len(latents),
        "latent_dim": int(latents.shape[1]),
        "explained_variance": [round(float(v), 4) for v in pca.explained],
        "pc_sd": [round(float(v), 4) for v in pca.sd],
        "displacement_rms_median_a": round(float(np.median(rms)), 4),
        "displacement_rms_max_a": round(float(np.max(rms)), 4),
        "stopped": vae.stopped,
        "epochs": len(vae.history),
        "pc1_orientation": orientation.record() if orientation else None,
    }
    write_json_atomic(args.out_json, summary)
    logger.info(
        "%s: PC1 %.0f%%, PC2 %.0f%% of the latent variance; median RMS displacement %.2f Å",
        label,
        100 * pca.explained[0],
        100 * pca.explained[1],
        summary["displacement_rms_median_a"],
    )
