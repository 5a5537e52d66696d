"""Stage ``train-vae``: one half set's deformation VAE, trained on that half only."""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, fields

import numpy as np
import pandas as pd
import torch

from dynamight_core.data.batches import BatchReader
from dynamight_core.device import seed_everything
from dynamight_core.errors import InputError
from dynamight_core.io.atomic_model import read_atomic_model
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.io.files import atomic_path, sha256_file
from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import ParticleSet
from dynamight_core.metrics.plots import plot_training
from dynamight_core.models.decoder import DisplacementDecoder
from dynamight_core.models.deformation import DeformationModel, save_deformation_model
from dynamight_core.models.encoder import ImageEncoder
from dynamight_core.models.gaussians import GaussianModel, load_gaussian_model
from dynamight_core.stages.common import (
    add_compute_arguments,
    add_particle_arguments,
    check_model_matches_particles,
    compute_device,
    read_half_set,
)
from dynamight_core.training.likelihood import FourierLikelihood, max_shell_for
from dynamight_core.training.regularisation import bonds_from_atomic_model
from dynamight_core.training.vae import VaeSettings, train_vae
from dynamight_core.training.vae_steps import TrainingGrid, encoder_inputs, latents

logger = logging.getLogger(__name__)

HELP = "train one half set's deformation VAE (encoder + displacement decoder)"
NORMALISATION_PARTICLES = 512


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the VAE training."""
    add_particle_arguments(parser)
    parser.add_argument("--halves", required=True, help="half-set CSV from split-halves")
    parser.add_argument("--half", type=int, choices=(1, 2), required=True)
    parser.add_argument("--model", required=True, help="this half set's warmed-up model")
    parser.add_argument("--latent-dim", type=int, default=6)
    parser.add_argument(
        "--encoder-px",
        type=int,
        default=64,
        help="largest encoder input image (the image is Fourier-cropped)",
    )
    parser.add_argument("--decoder-layers", type=int, default=8)
    parser.add_argument("--decoder-width", type=int, default=32)
    parser.add_argument("--pe-frequencies", type=int, default=10)
    parser.add_argument(
        "--max-resolution-a",
        type=float,
        default=None,
        help="highest resolution used in training (default: Nyquist)",
    )
    for item in fields(VaeSettings):
        parser.add_argument(
            "--" + item.name.replace("_", "-"), default=item.default, type=type(item.default)
        )
    parser.add_argument(
        "--atomic-model",
        default=None,
        help="PDB/mmCIF docked in the consensus map: regularise with its residue connectivity "
        "instead of the smoothness graph (biases the motions towards the model)",
    )
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--out-latents", required=True, help="latent means and sigmas (CSV)")
    parser.add_argument("--out-history", required=True, help="training curves (TSV)")
    parser.add_argument("--out-png", required=True, help="training curves (PNG)")
    add_compute_arguments(parser)


def _particle_radius_a(consensus: GaussianModel) -> float:
    with torch.no_grad():
        reach = consensus.positions_a().norm(dim=1).max() + 2 * consensus.widths_a().max()
    return float(reach)


def _build(
    args: argparse.Namespace, consensus: GaussianModel, grid: TrainingGrid
) -> DeformationModel:
    encoder_pixel_a = consensus.box_a / grid.encoder_px
    encoder = ImageEncoder(
        grid.encoder_px, args.latent_dim, _particle_radius_a(consensus) / encoder_pixel_a
    )
    decoder = DisplacementDecoder(
        args.latent_dim,
        consensus.box_px,
        args.pe_frequencies,
        args.decoder_width,
        args.decoder_layers,
    )
    return DeformationModel(consensus, encoder, decoder)


@torch.no_grad()
def _normalise(
    model: DeformationModel, reader: BatchReader, train: np.ndarray, grid: TrainingGrid
) -> None:
    """Standardise encoder inputs with the statistics of (up to 512) training images."""
    images = encoder_inputs(reader.read(train[:NORMALISATION_PARTICLES]), grid)
    inside = model.encoder.mask > 0.5
    values = images[:, inside]
    model.encoder.set_normalisation(float(values.mean()), float(values.std()))


def _write_latents(
    path: str,
    model: DeformationModel,
    reader: BatchReader,
    particles: ParticleSet,
    rows: tuple[np.ndarray, np.ndarray],
    grid: TrainingGrid,
    likelihood: FourierLikelihood,
    settings: VaeSettings,
    known: dict[int, torch.Tensor],
) -> None:
    """Refined latent means (``mu_*``), encoder sigmas and means, keyed by STAR row."""
    train, validation = rows
    chunks: dict[str, list[np.ndarray]] = {"row": [], "mu": [], "encoder_mu": [], "sigma": []}
    everything = np.sort(np.concatenate([train, validation]))
    for batch_rows, refined, mu, sigma in latents(
        model,
        reader,
        everything,
        grid,
        likelihood,
        settings.batch_size,
        settings.refinement(),
        known,
    ):
        for key, values in zip(
            chunks, (batch_rows, refined.numpy(), mu.numpy(), sigma.numpy()), strict=True
        ):
            chunks[key].append(values)
    row = np.concatenate(chunks["row"])
    table = pd.DataFrame(
        {
            "row": row,
            "rlnImageName": np.array(particles.image_names())[row],
            "validation": np.isin(row, validation).astype(int),
        }
    )
    for name in ("mu", "sigma", "encoder_mu"):
        values = np.concatenate(chunks[name])
        for dim in range(values.shape[1]):
            table[f"{name}_{dim}"] = values[:, dim]
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def _bonds(path: str | None, consensus: GaussianModel) -> torch.Tensor | None:
    """Bond graph from the atomic model ``path`` (map frame: Å from the map's corner)."""
    if path is None:
        return None
    atoms = read_atomic_model(path)
    logger.warning(
        "regularising with bonds from the atomic model %s: the paper's control experiments "
        "show that this biases the motions (and the map) towards the model, even a wrong one; "
        "compare with a run without it",
        path,
    )
    pixel_a = consensus.box_a / consensus.box_px
    centred_a = atoms.positions_a - (consensus.box_px // 2) * pixel_a
    return bonds_from_atomic_model(
        consensus.positions_a(), centred_a, atoms.chains, atoms.residue_numbers, str(path)
    )


def run(args: argparse.Namespace) -> None:
    """Train the half set's VAE and write the model, latents and training curves."""
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
    bonds = _bonds(args.atomic_model, consensus)
    settings = VaeSettings(**{f.name: getattr(args, f.name) for f in fields(VaeSettings)})
    grid = TrainingGrid.choose(
        particles.box_px,
        particles.pixel_size_a,
        max_shell_for(particles.box_px, particles.pixel_size_a, args.max_resolution_a),
        args.encoder_px,
    )
    noise = torch.tensor(warm["noise_power"], device=device)[: grid.box_px // 2 + 1]
    likelihood = FourierLikelihood(noise, grid.box_px, grid.max_shell)
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
    model = _build(args, consensus, grid).to(device)
    source = ImageSource(particles)
    reader = BatchReader(particles, source, device)
    _normalise(model, reader, train, grid)
    checkpointer = None
    if args.checkpoint_dir:
        checkpointer = Checkpointer(
            args.checkpoint_dir,
            "train-vae",
            {
                **asdict(settings),
                **asdict(grid),
                "half": args.half,
                "latent_dim": args.latent_dim,
                "decoder": [args.decoder_layers, args.decoder_width, args.pe_frequencies],
                "star_sha256": sha256_file(args.star),
                "halves_sha256": sha256_file(args.halves),
                "model_sha256": sha256_file(args.model),
                "atomic_model_sha256": sha256_file(args.atomic_model) if args.atomic_model else "",
            },
        )
    state = train_vae(
        model, reader, train, validation, grid, likelihood, settings, checkpointer, bonds
    )
    known = (
        {}
        if state.validation_latents is None
        else dict(zip(validation.tolist(), state.validation_latents, strict=True))
    )
    _write_latents(
        args.out_latents,
        model,
        reader,
        particles,
        (train, validation),
        grid,
        likelihood,
        settings,
        known,
    )
    source.close()
    history = pd.DataFrame(state.history)
    with atomic_path(args.out_history) as tmp:
        history.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    plot_training(args.out_png, history, f"Deformation VAE, half set {args.half}")
    save_deformation_model(
        args.out_model,
        model,
        {
            "half": args.half,
            "settings": asdict(settings),
            "grid": asdict(grid),
            "noise_power": noise.tolist(),
            "epochs": state.epoch,
            "stopped": state.stopped,
            "history": state.history,
        },
    )
    if checkpointer:
        checkpointer.clear()
