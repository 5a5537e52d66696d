"""Stage ``deformation-error``: how well the two half sets agree on each particle's motion.

Each half set held out validation particles that neither half trained on. Every one of
them is read by both halves' models (latent refined against its own image) and both
displacement fields are evaluated at the same points (half set 1's consensus Gaussians).
Their difference estimates the error of the estimated motions, as in DynaMight; a
constant offset per point (the two consensus references need not be the same state) is
removed first, and also reported. This is an evaluation: it feeds no map.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd
import torch

from dynamight_core.data.batches import BatchReader
from dynamight_core.io.files import atomic_path, write_json_atomic
from dynamight_core.io.stacks import ImageSource, validate_stacks
from dynamight_core.io.star import read_particles
from dynamight_core.models.deformation import DeformationModel, load_deformation_model
from dynamight_core.reconstruct.halves import read_split
from dynamight_core.stages.common import (
    add_compute_arguments,
    add_particle_arguments,
    compute_device,
)
from dynamight_core.training.likelihood import FourierLikelihood
from dynamight_core.training.vae_steps import Refinement, TrainingGrid, latents

logger = logging.getLogger(__name__)

HELP = "estimate the error of the motions from the disagreement of the two half sets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the error estimate."""
    add_particle_arguments(parser)
    parser.add_argument("--halves", required=True)
    parser.add_argument("--models", nargs=2, required=True, help="half set 1 and 2 VAE models")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out-json", required=True)
    parser.add_argument("--out-tsv", required=True, help="error per validation particle")
    add_compute_arguments(parser)


def _displacements(
    model: DeformationModel,
    extra: dict[str, object],
    reader: BatchReader,
    rows: np.ndarray,
    points: torch.Tensor,
    batch_size: int,
) -> np.ndarray:
    """`(P, M, 3)` displacements (Å) at `(M, 3)` points (box units) of the particles ``rows``."""
    grid = TrainingGrid(**extra["grid"])  # type: ignore[arg-type]
    settings = extra["settings"]  # type: ignore[index]
    likelihood = FourierLikelihood(
        torch.tensor(extra["noise_power"], device=points.device), grid.box_px, grid.max_shell
    )
    refinement = Refinement(settings["refine_steps"], settings["refine_lr"], settings["kl_weight"])
    fields = []
    for _, refined, _, _ in latents(model, reader, rows, grid, likelihood, batch_size, refinement):
        with torch.no_grad():
            fields.append(
                (model.decoder(refined.to(points.device), points) * model.consensus.box_a)
                .cpu()
                .numpy()
            )
    return np.concatenate(fields)


def run(args: argparse.Namespace) -> None:
    """Decode the validation particles with both models and compare."""
    particles = read_particles(args.star, args.project_root)
    validate_stacks(particles)
    rows = np.sort(np.concatenate([read_split(args.halves, particles, half)[1] for half in (1, 2)]))
    device = compute_device(args)
    loaded = [load_deformation_model(path, device) for path in args.models]
    for model, _ in loaded:
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    points = loaded[0][0].consensus.positions.detach()
    reader = BatchReader(particles, ImageSource(particles), device)
    first, second = (
        _displacements(model, extra, reader, rows, points, args.batch_size)
        for model, extra in loaded
    )
    difference = first - second
    raw = np.sqrt((difference**2).sum(-1).mean(1))
    centred = difference - difference.mean(axis=0, keepdims=True)
    per_particle = np.sqrt((centred**2).sum(-1).mean(1))
    amplitude = np.sqrt(((first - first.mean(0)) ** 2).sum(-1).mean(1))
    summary = {
        "validation_particles": len(rows),
        "median_error_a": round(float(np.median(per_particle)), 4),
        "p90_error_a": round(float(np.percentile(per_particle, 90)), 4),
        "median_error_with_offset_a": round(float(np.median(raw)), 4),
        "median_motion_a": round(float(np.median(amplitude)), 4),
        "definition": "RMS over half set 1's consensus Gaussians of the difference of the two "
        "halves' displacements, after removing each point's mean difference",
    }
    logger.info(
        "half sets disagree by %.2f Å (median over %d validation particles; motion %.2f Å)",
        summary["median_error_a"],
        len(rows),
        summary["median_motion_a"],
    )
    table = pd.DataFrame(
        {
            "row": rows,
            "rlnImageName": np.array(particles.image_names())[rows],
            "error_a": per_particle,
            "error_with_offset_a": raw,
            "motion_a": amplitude,
        }
    )
    with atomic_path(args.out_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    write_json_atomic(args.out_json, summary)
