"""Steps that several stages' ``run`` share: device, half sets, model checks, checkpoints.

Imported inside ``run`` (it imports torch); the options live in :mod:`.options`.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynamight_core.data.halves import read_split
from dynamight_core.device import configure_threads, select_device
from dynamight_core.errors import InputError
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.io.identity import input_hashes
from dynamight_core.io.stacks import validate_stacks
from dynamight_core.io.star import ParticleSet, read_particles
from dynamight_core.models.gaussians import GaussianModel

logger = logging.getLogger(__name__)


def compute_device(args: argparse.Namespace) -> torch.device:
    """Configure threads and pick the device from parsed arguments."""
    configure_threads(args.threads)
    return select_device(args.device)


def read_checked_particles(args: argparse.Namespace) -> ParticleSet:
    """The particles of ``args.star``, every stack they name checked."""
    particles = read_particles(args.star, args.project_root)
    validate_stacks(particles)
    return particles


def read_half_set(
    args: argparse.Namespace,
) -> tuple[ParticleSet, np.ndarray, np.ndarray]:
    """The particles (stacks checked) and the training and validation rows of ``args.half``.

    Fails before any compute when the half set holds out no validation particles.
    """
    particles = read_checked_particles(args)
    train, validation = read_split(args.halves, particles, args.half)
    if validation.size == 0:
        raise InputError(
            args.halves,
            "validation",
            f"held-out particles in half set {args.half}",
            "none",
            "Re-run split-halves with a validation fraction above 0.",
        )
    return particles, train, validation


def stage_checkpointer(
    args: argparse.Namespace,
    stage: str,
    settings: Mapping[str, Any],
    inputs: Mapping[str, str | Path | None],
    every: int = 1,
    hashes: Mapping[str, str | None] | None = None,
) -> Checkpointer | None:
    """The stage's checkpointer when ``--checkpoint-dir`` is given, else ``None``.

    A checkpoint resumes only with the same ``settings`` and the same content of every
    file in ``inputs`` (name -> path, ``None`` for an input not given); ``hashes``, when
    the caller has them already (:func:`~dynamight_core.io.identity.input_hashes` of
    ``inputs``), spares reading the files again.
    """
    if not args.checkpoint_dir:
        return None
    found = input_hashes(inputs) if hashes is None else hashes
    named = {f"{name}_sha256": value for name, value in found.items()}
    return Checkpointer(args.checkpoint_dir, stage, {**settings, **named}, every)


PIXEL_SIZE_RTOL = 1e-4


def check_model_matches_particles(
    model_path: str | Path, model: GaussianModel, particles: ParticleSet
) -> None:
    """Fail unless a Gaussian model was made on the particles' box and pixel size.

    Pixel sizes come from float32 MRC headers and from STAR text, so they are compared
    with a relative tolerance (``PIXEL_SIZE_RTOL``), never exactly: 1.8 Å comes back from
    a header as 1.7999999523 Å.
    """
    same_box = model.box_px == particles.box_px
    same_pixel = math.isclose(model.pixel_size_a, particles.pixel_size_a, rel_tol=PIXEL_SIZE_RTOL)
    if not (same_box and same_pixel):
        raise InputError(
            model_path,
            "box and pixel size",
            f"{particles.box_px} px at {particles.pixel_size_a:.6g} Å (the particles)",
            f"{model.box_px} px at {model.pixel_size_a:.6g} Å",
        )


def check_half_set_models(paths: Sequence[str | Path], vaes: Sequence[Any]) -> None:
    """Fail unless ``vaes`` (read from ``paths``) are half set 1's and half set 2's models.

    Refused: a model of the wrong half in either place, or one training run given twice
    (e.g. the same file for both halves), which would compare a model with itself.
    """
    for expected, (vae, path) in enumerate(zip(vaes, paths, strict=True), start=1):
        if vae.half != expected:
            raise InputError(path, "half", f"a model of half set {expected}", str(vae.half))
    first, second = vaes
    if first.run and first.run == second.run:
        raise InputError(
            f"{paths[0]} and {paths[1]}",
            "run",
            "two independently trained half-set models",
            f"one training run ({first.run}) twice",
        )


def half_set_rows(args: argparse.Namespace, particles: ParticleSet) -> np.ndarray:
    """Every STAR row of ``args.half`` (training and validation), sorted."""
    train, validation = read_split(args.halves, particles, args.half)
    return np.sort(np.concatenate([train, validation]))


def deformed_geometry(
    args: argparse.Namespace, particles: ParticleSet, source: Any, device: torch.device
) -> tuple[np.ndarray, Any]:
    """The half set's rows and the geometry of its deformed reconstruction.

    Reads ``--model`` (trained VAE), ``--latents`` (its table, checked against the half set)
    and, with ``--method inverse``, ``--inverse-model``.
    """
    from dynamight_core.data.batches import BatchReader
    from dynamight_core.data.latents import check_latents_match_model, read_latent_table
    from dynamight_core.models.inverse import load_inverse
    from dynamight_core.reconstruct.deformed import half_set_geometry
    from dynamight_core.training.half_set_vae import load_half_set_vae

    rows = half_set_rows(args, particles)
    vae = load_half_set_vae(args.model, device)
    check_model_matches_particles(args.model, vae.model.consensus, particles)
    if vae.half != args.half:
        raise InputError(args.model, "half", f"a model of half set {args.half}", str(vae.half))
    table = read_latent_table(args.latents, rows)
    check_latents_match_model(args.latents, table, args.model, vae)
    real_latents = table.latents
    if args.shuffle_latents_seed is not None:
        logger.info(
            "null control: each particle takes a random other particle's latent (seed %d)",
            args.shuffle_latents_seed,
        )
        table = table.shuffled(args.shuffle_latents_seed)
    latents = table.by_row(len(particles.euler_deg))
    inverse = None
    if args.method == "inverse":
        if not args.inverse_model:
            raise InputError(
                "--inverse-model",
                "file",
                "an inverse network (fit-inverse)",
                "none given",
                "deformed.method inverse needs stage fit-inverse's model",
            )
        inverse, extra = load_inverse(args.inverse_model, device)
        if extra.get("half") != args.half:
            raise InputError(
                args.inverse_model, "half", f"half set {args.half}", str(extra.get("half"))
            )
        inverse.requires_grad_(False)
    model = vae.model.requires_grad_(False)
    reference = half_reference_state(args, model, real_latents)
    geometry = half_set_geometry(
        BatchReader(particles, source, device),
        model,
        latents,
        inverse,
        args.control_grid,
        reference,
    )
    return rows, geometry


def half_reference_state(args: argparse.Namespace, model: Any, latents: torch.Tensor) -> Any:
    """The state the half's maps are reconstructed in (``--reference``, default trained).

    ``latents``: `(P, L)` the half's real latents (before any null-control shuffle).
    ``--consensus-fit`` (the half's warm-up model) must hold the model's Gaussians.
    """
    from dynamight_core.models.gaussians import load_gaussian_model
    from dynamight_core.reconstruct.reference_state import drift_a, reference_state

    kind = getattr(args, "reference", "trained")
    fit_a = model.consensus.positions_a().detach()
    fit_path = getattr(args, "consensus_fit", None)
    if fit_path:
        fit, extra = load_gaussian_model(fit_path)
        if extra.get("half", args.half) != args.half:
            raise InputError(
                fit_path, "half", f"the warm-up of half set {args.half}", str(extra.get("half"))
            )
        if fit.n_gaussians != model.consensus.n_gaussians:
            raise InputError(
                fit_path,
                "n_gaussians",
                f"the {model.consensus.n_gaussians} Gaussians of {args.model}",
                str(fit.n_gaussians),
                "Pass the warm-up model this half's VAE was trained from.",
            )
        if abs(fit.box_a - model.consensus.box_a) > 1e-3 * model.consensus.box_a:
            raise InputError(
                fit_path,
                "box",
                f"{model.consensus.box_a:.3f} Å as {args.model}",
                f"{fit.box_a:.3f} Å",
            )
        fit_a = fit.positions_a().detach()
    elif kind == "consensus_fit":
        raise InputError(
            "--consensus-fit",
            "file",
            "the half's warm-up model (gaussians/warmup_half{h}.pt)",
            "none given",
            "deformed.reference consensus_fit needs it",
        )
    state = reference_state(kind, model, latents, fit_a, args.control_grid)
    drift = drift_a(state)
    logger.info(
        "reference state %s: trained consensus %.2f Å RMS from the consensus fit, mean "
        "deformed state %.2f Å; the map's state is %.2f Å from the trained consensus",
        kind,
        drift["trained_from_fit_rms_a"],
        drift["mean_from_fit_rms_a"],
        drift["reference_from_trained_rms_a"],
    )
    return state
