"""Stage ``align-halves``: orient half set 2's first principal component as half set 1's.

Each half's latent space has its own, arbitrary, orientation. Both halves' models decode
the ends of their own PC1 (the particles' 5th and 95th percentiles) into displacement
fields in the shared consensus frame; the sign that makes half 2's field agree with half
1's orients half 2's PC1 (``data/latent_alignment.py``). Only that sign crosses between the
halves; state maps (``state-maps``) use it so that a percentile names the same end of the
motion in both halves. Writes the sign and the agreement (cosine of the two fields).
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_section_arguments
from dynamight_core.stages.options import add_compute_arguments

logger = logging.getLogger(__name__)

HELP = "orient half set 2's latent PC1 as half set 1's, by their decoded motions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the alignment."""
    add_file_argument(parser, "--models", "half set 1's and 2's trained VAE (train-vae)", nargs=2)
    add_file_argument(parser, "--latents", "half set 1's and 2's latent tables", nargs=2)
    add_section_arguments(parser, "deformed", only=("control_grid",))
    add_file_argument(parser, "--out-json", "the sign and the agreement (JSON)")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Decode both halves' PC1 and compare."""
    from dynamight_core.data.latent_alignment import ALIGNMENT_KIND
    from dynamight_core.data.latent_space import latent_pca
    from dynamight_core.data.latents import check_latents_match_model, read_latent_means
    from dynamight_core.io.files import sha256_file, write_json_atomic
    from dynamight_core.reconstruct.state_maps import align_half_directions
    from dynamight_core.stages.common import check_half_set_models, compute_device
    from dynamight_core.training.half_set_vae import load_half_set_vae

    device = compute_device(args)
    vaes = [load_half_set_vae(path, device) for path in args.models]
    check_half_set_models(args.models, vaes)
    pcas = []
    for path, vae, model_path in zip(args.latents, vaes, args.models, strict=True):
        table, means = read_latent_means(path)
        check_latents_match_model(path, table, model_path, vae)
        pcas.append(latent_pca(means))
    models = (vaes[0].model.requires_grad_(False), vaes[1].model.requires_grad_(False))
    alignment = align_half_directions(models, (pcas[0], pcas[1]), args.control_grid)
    record = {
        "kind": ALIGNMENT_KIND,
        **alignment.record(),
        "models_sha256": [sha256_file(path) for path in args.models],
        "latents_sha256": [sha256_file(path) for path in args.latents],
        "definition": "cosine between the two halves' displacement fields from the 5th to the "
        "95th percentile of their own PC1, on both halves' pseudo-atoms; sign: multiply half "
        "set 2's PC1 scores by it to orient them as half set 1's",
    }
    write_json_atomic(args.out_json, record)
    level = logging.INFO if alignment.aligned else logging.WARNING
    logger.log(
        level,
        "half set 2's PC1 %s half set 1's (agreement %.2f%s)",
        "follows" if alignment.sign > 0 else "is reversed against",
        alignment.correlation,
        "" if alignment.aligned else ": too weak to name the same motion",
    )
