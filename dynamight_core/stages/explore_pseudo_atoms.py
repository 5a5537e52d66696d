"""Action ``explore pseudo-atoms``: a Gaussian model as PDB/mmCIF pseudo-atoms.

Takes any of our Gaussian models: a consensus fit (fit-consensus), its warm-up, or a
trained half-set VAE (its consensus, plus, with ``--latents``, each pseudo-atom's RMS
displacement over the particles in the B-factor column). Coordinates are in the frame of
our maps (origin 0), so the pseudo-atoms overlay them in ChimeraX, Coot or PyMOL.
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument

logger = logging.getLogger(__name__)

HELP = "a Gaussian model (consensus fit, warm-up or VAE) as PDB/mmCIF pseudo-atoms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``explore pseudo-atoms``."""
    add_file_argument(
        parser, "--model", "a Gaussian model: fit-consensus/warmup .pt or train-vae model.pt"
    )
    add_file_argument(
        parser,
        "--latents",
        "the VAE's latent table: B-factor = RMS displacement (Å); else B = 0",
        default=None,
    )
    add_file_argument(parser, "--out-cif", "pseudo-atoms, mmCIF")
    add_file_argument(parser, "--out-pdb", "pseudo-atoms, PDB (up to 99,999)", default=None)


def run(args: argparse.Namespace) -> None:
    """Read the model, write the pseudo-atoms."""
    import numpy as np

    from dynamight_core.data.latents import check_latents_match_model, read_latent_means
    from dynamight_core.errors import InputError
    from dynamight_core.explore.pseudo_atoms import pseudo_atom_structure, write_pseudo_atoms
    from dynamight_core.explore.states import map_frame_a
    from dynamight_core.io.checkpoint import model_kind
    from dynamight_core.models.deformation import MODEL_KIND as VAE_KIND
    from dynamight_core.models.deformation import displacement_rms_a
    from dynamight_core.models.gaussians import load_gaussian_model
    from dynamight_core.training.half_set_vae import load_half_set_vae

    if model_kind(args.model) == VAE_KIND:
        vae = load_half_set_vae(args.model)
        model = vae.model.requires_grad_(False)
        consensus = model.consensus
        if args.latents:
            table, latents = read_latent_means(args.latents)
            check_latents_match_model(args.latents, table, args.model, vae)
            bfactors = displacement_rms_a(model, latents)
        else:
            bfactors = np.zeros(consensus.n_gaussians)
    else:
        if args.latents:
            raise InputError(args.model, "kind", "a trained VAE to go with --latents", "a fit")
        consensus, _ = load_gaussian_model(args.model)
        bfactors = np.zeros(consensus.n_gaussians)
    positions = consensus.positions_a().detach().double().cpu().numpy()
    frame = map_frame_a(positions[None], consensus.box_px, consensus.pixel_size_a)
    structure = pseudo_atom_structure(frame, bfactors, consensus.box_a, "dynamight-core model")
    write_pseudo_atoms(structure, args.out_cif, args.out_pdb)
    logger.info("%d pseudo-atoms written to %s", consensus.n_gaussians, args.out_cif)
