"""One half set's trained VAE as the later stages use it, and its file.

A :class:`HalfSetVae` holds everything needed to read a particle's conformation: the
deformation model, the Fourier-cropped grid it was trained on, the likelihood (the half
set's noise spectrum), how latents are refined against an image, and the batch size.
:func:`save_half_set_vae` and :func:`load_half_set_vae` are the one pair of functions that
write and read it; the file is a model file (``weights_only``-safe) whose ``extra`` record
holds these settings and the training's history.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from dynamight_core.errors import InputError
from dynamight_core.models.deformation import (
    DeformationModel,
    load_deformation_model,
    save_deformation_model,
)
from dynamight_core.training.likelihood import FourierLikelihood, max_shell_for


@dataclass(frozen=True)
class TrainingGrid:
    """The Fourier-cropped grid the VAE is trained on.

    Images are compared up to ``max_shell``, so they are rendered on a box of
    ``box_px >= 2 max_shell`` with a proportionally larger pixel: inside that band the
    transforms are identical to those of the full box, at a fraction of the cost.
    """

    box_px: int
    pixel_size_a: float
    max_shell: int
    encoder_px: int

    @classmethod
    def choose(
        cls, full_box_px: int, pixel_size_a: float, max_shell: int, encoder_px: int
    ) -> TrainingGrid:
        """The smallest even box holding shells up to ``max_shell`` (at most the full box)."""
        box = min(full_box_px, 2 * max_shell + 2)
        box += box % 2
        return cls(box, pixel_size_a * full_box_px / box, max_shell, min(encoder_px, box))

    @classmethod
    def for_resolution(
        cls,
        full_box_px: int,
        pixel_size_a: float,
        max_resolution_a: float | None,
        encoder_px: int,
    ) -> TrainingGrid:
        """The grid of a training to ``max_resolution_a`` (``None``: Nyquist), as train-vae's."""
        max_shell = max_shell_for(full_box_px, pixel_size_a, max_resolution_a)
        return cls.choose(full_box_px, pixel_size_a, max_shell, encoder_px)


@dataclass(frozen=True)
class Refinement:
    """How latents are refined against a particle's own image (``refine_latents``).

    Attributes
    ----------
    steps
        Steps from the encoder's estimate (first validation, export).
    lr
        Adam learning rate in latent units.
    prior_weight
        Weight of the N(0, 1) prior (the VAE's KL weight).
    tracking_steps
        Steps per epoch for validation particles, continuing from their previous latents
        (the decoder changes little between epochs).
    """

    steps: int
    lr: float
    prior_weight: float
    tracking_steps: int


@dataclass
class HalfSetVae:
    """One half set's VAE with what reading a particle's latent needs.

    Attributes
    ----------
    model
        Consensus Gaussians, encoder and decoder.
    grid
        The training grid.
    likelihood
        Whitened Fourier loss with the half set's noise spectrum (on ``grid``).
    refinement
        Latent refinement settings.
    batch_size
        Particles per batch.
    half
        The half set (1 or 2).
    history
        Training curves, one record per epoch.
    stopped
        Why training stopped.
    run
        The training run's id (:func:`dynamight_core.io.identity.fingerprint` of its
        settings and input files); ``""`` for a model written before run ids existed.
    made_from
        The SHA-256 of each file the training read (STAR file, half split, warm-up model,
        ...), by role.
    """

    model: DeformationModel
    grid: TrainingGrid
    likelihood: FourierLikelihood
    refinement: Refinement
    batch_size: int
    half: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: str = ""
    run: str = ""
    made_from: dict[str, str | None] = field(default_factory=dict)


REQUIRED = ("half", "grid", "refinement", "batch_size", "noise_power", "history", "stopped")


def save_half_set_vae(
    path: str | Path, vae: HalfSetVae, settings: dict[str, Any] | None = None
) -> None:
    """Write ``vae`` atomically; ``settings`` (the training's) are kept for provenance."""
    extra = {
        "half": vae.half,
        "grid": asdict(vae.grid),
        "refinement": asdict(vae.refinement),
        "batch_size": vae.batch_size,
        "noise_power": vae.likelihood.noise_power.cpu().tolist(),
        "epochs": len(vae.history),
        "stopped": vae.stopped,
        "run": vae.run,
        "made_from": dict(vae.made_from),
        "history": vae.history,
        "settings": dict(settings or {}),
    }
    save_deformation_model(path, vae.model, extra)


def load_half_set_vae(path: str | Path, device: torch.device | None = None) -> HalfSetVae:
    """Read a file written by :func:`save_half_set_vae` onto ``device`` (CPU by default).

    Raises
    ------
    InputError
        When the file is not a trained half-set VAE (e.g. a model of another kind, or one
        written before training finished).
    """
    device = device or torch.device("cpu")
    model, extra = load_deformation_model(path, device)
    missing = [name for name in REQUIRED if name not in extra]
    if missing:
        raise InputError(path, missing[0], "a trained half-set VAE (from train-vae)", "none")
    grid = TrainingGrid(**extra["grid"])
    noise = torch.tensor(extra["noise_power"], device=device)
    return HalfSetVae(
        model=model,
        grid=grid,
        likelihood=FourierLikelihood(noise, grid.box_px, grid.max_shell),
        refinement=Refinement(**extra["refinement"]),
        batch_size=int(extra["batch_size"]),
        half=int(extra["half"]),
        history=list(extra["history"]),
        stopped=str(extra["stopped"]),
        run=str(extra.get("run", "")),
        made_from=dict(extra.get("made_from", {})),
    )


def half_set_vae_run(path: str | Path) -> str:
    """The training run id recorded in a half-set VAE file (``""`` when none)."""
    return load_half_set_vae(path).run
