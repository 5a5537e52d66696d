"""Warm-up: the global Gaussian parameters against one half set's particle images.

Before any deformation is learned, the consensus model's positions, masses, widths and
class weights are refined against the images at their known poses, with the CTF. First
the overall mass scale between map and images is solved in closed form and the noise
spectrum of the half set is estimated from its residuals; then Adam minimises the
whitened Fourier-space loss for a number of epochs. Only the particles of one half set
(its training part) are read; its validation part measures the loss before and after.
Each epoch ends with a checkpoint, so a killed run resumes at the next epoch with the
same result as an uninterrupted one. A NaN or infinite loss or parameter stops the
warm-up with ``TrainingDivergedError`` before anything is saved; an epoch that runs out of
memory is run again from the end of the last one with half the batch (``training/oom.py``).
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from dynamight_core.config_schema import default_of
from dynamight_core.data.batches import BatchReader
from dynamight_core.geometry.fourier import hermitian_weights_2d
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.training.epochs import DivergenceGuard, ResumableLoop, order_seed
from dynamight_core.training.likelihood import (
    FourierLikelihood,
    estimate_noise_power,
    max_shell_for,
    mean_loss,
    solve_image_scale,
)
from dynamight_core.training.memory import WARMUP_SETTINGS
from dynamight_core.training.oom import batch_after, check_forced_out_of_memory

logger = logging.getLogger(__name__)

GUARD = DivergenceGuard(
    "warmup",
    "Lower the learning rates warmup.lr_positions and warmup.lr_shape, e.g. tenfold, and run again",
)


@dataclass(frozen=True)
class WarmupSettings:
    """Settings of the warm-up.

    Attributes
    ----------
    epochs
        Passes over the training particles.
    lr_positions
        Adam learning rate of the positions, in box units (the paper's 1e-4).
    lr_shape
        Adam learning rate of log-masses, widths and class weights.
    batch_size
        Particles per step.
    max_resolution_a
        Highest resolution (Å) used in the loss; ``None`` for Nyquist.
    noise_particles
        Particles used to solve the scale and estimate the noise spectrum.
    seed
        Seed of the particle order.
    """

    epochs: int = default_of("warmup", "epochs")
    lr_positions: float = default_of("warmup", "lr_positions")
    lr_shape: float = default_of("warmup", "lr_shape")
    batch_size: int = default_of("warmup", "batch_size")
    max_resolution_a: float | None = default_of("warmup", "max_resolution_a")
    noise_particles: int = default_of("warmup", "noise_particles")
    seed: int = default_of("warmup", "seed")


@dataclass
class WarmupResult:
    """What the warm-up did: the noise model, the scale and the loss per epoch."""

    noise_power: torch.Tensor
    max_shell: int
    scale: float
    validation_before: float
    history: list[dict[str, float]] = field(default_factory=list)


def _optimizer(model: GaussianModel, settings: WarmupSettings) -> torch.optim.Adam:
    return torch.optim.Adam(
        [
            {"params": [model.positions], "lr": settings.lr_positions},
            {
                "params": [model.log_masses, model.raw_widths, model.class_logits],
                "lr": settings.lr_shape,
            },
        ]
    )


def _prepare(
    model: GaussianModel,
    reader: BatchReader,
    train: np.ndarray,
    validation: np.ndarray,
    settings: WarmupSettings,
) -> WarmupResult:
    """Solve the scale, estimate the noise spectrum, score the validation set."""
    subset = train[: settings.noise_particles]
    box = model.box_px
    flat = hermitian_weights_2d(box, reader.device).expand(box, -1).clone()
    flat[0, 0] = 0.0
    scale = solve_image_scale(model, reader, subset, flat, settings.batch_size)
    noise = estimate_noise_power(model, reader, subset, settings.batch_size)
    max_shell = max_shell_for(box, model.pixel_size_a, settings.max_resolution_a)
    likelihood = FourierLikelihood(noise, box, max_shell)
    scale *= solve_image_scale(model, reader, subset, likelihood.weights, settings.batch_size)
    noise = estimate_noise_power(model, reader, subset, settings.batch_size)
    likelihood = FourierLikelihood(noise, box, max_shell)
    before = mean_loss(model, likelihood, reader, validation, settings.batch_size)
    logger.info("image scale %.4g; validation loss of the fitted model %.5f", scale, before)
    return WarmupResult(noise.cpu(), max_shell, scale, before)


def warm_up(
    model: GaussianModel,
    reader: BatchReader,
    train: np.ndarray,
    validation: np.ndarray,
    settings: WarmupSettings,
    checkpointer: Checkpointer | None = None,
) -> WarmupResult:
    """Refine the global Gaussian parameters on ``train``; report on ``validation``.

    Parameters
    ----------
    model
        The consensus model of this half set (modified in place).
    reader
        Reads the half set's particles.
    train, validation
        STAR rows of the half set's training and validation particles.
    settings
        Warm-up settings.
    checkpointer
        Saves each epoch; a saved state with the same settings is resumed.
    """
    optimizer = _optimizer(model, settings)
    loop = ResumableLoop(checkpointer, "warmup", model, optimizer)
    saved = loop.resume()
    if saved is None:
        result = _prepare(model, reader, train, validation, settings)
        first_epoch = 0
    else:
        result = _result_from(saved)
        first_epoch = int(saved["epoch"])
        logger.info("resuming from checkpoint: epoch %d of %d", first_epoch + 1, settings.epochs)
    likelihood = FourierLikelihood(
        result.noise_power.to(reader.device), model.box_px, result.max_shell
    )
    epoch = first_epoch
    while epoch < settings.epochs:
        last = loop.capture(_values(epoch, result))
        try:
            rows = (train, validation)
            _epoch(model, optimizer, likelihood, reader, rows, settings, epoch, result)
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            batch = batch_after(error, settings.batch_size, "warmup.batch_size", WARMUP_SETTINGS)
            settings = replace(settings, batch_size=batch)
            result = _result_from(loop.restore(last))
            continue
        epoch += 1
        loop.save(_values(epoch, result))
    return result


def _values(epoch: int, result: WarmupResult) -> dict[str, Any]:
    """What the checkpoint keeps of the loop after ``epoch`` epochs."""
    return {
        "epoch": epoch,
        "noise_power": result.noise_power,
        "max_shell": result.max_shell,
        "scale": result.scale,
        "validation_before": result.validation_before,
        "history": result.history,
    }


def _result_from(saved: dict[str, Any]) -> WarmupResult:
    """The :class:`WarmupResult` of :func:`_values`."""
    return WarmupResult(
        saved["noise_power"],
        int(saved["max_shell"]),
        float(saved["scale"]),
        float(saved["validation_before"]),
        list(saved["history"]),
    )


def _epoch(
    model: GaussianModel,
    optimizer: torch.optim.Optimizer,
    likelihood: FourierLikelihood,
    reader: BatchReader,
    rows: tuple[np.ndarray, np.ndarray],
    settings: WarmupSettings,
    epoch: int,
    result: WarmupResult,
) -> None:
    """Warm-up epoch ``epoch`` (0-based) over the (training, validation) ``rows``."""
    train, validation = rows
    total = 0.0
    order = order_seed(settings.seed, epoch)
    what = f"warm-up epoch {epoch + 1}/{settings.epochs}"
    # closing: the prefetcher stops however the epoch ends (an OOM re-runs it)
    with closing(reader.tracked(train, settings.batch_size, what, order)) as batches:
        for step, batch in enumerate(batches):
            check_forced_out_of_memory()
            optimizer.zero_grad(set_to_none=True)
            predicted = model.projections(batch.rotations, batch.shifts_a, batch.ctf)
            loss = likelihood.per_image(predicted, batch.images_ft).mean()
            value = GUARD.loss(loss, f"epoch {epoch + 1}, step {step + 1}")
            loss.backward()
            optimizer.step()
            total += value * len(batch.indices)
    validation_loss = mean_loss(model, likelihood, reader, validation, settings.batch_size)
    GUARD.loss(validation_loss, f"epoch {epoch + 1}", "validation loss")
    GUARD.parameters(model, f"the end of epoch {epoch + 1}")
    result.history.append(
        {
            "epoch": epoch + 1,
            "train_loss": total / len(train),
            "validation_loss": validation_loss,
        }
    )
    logger.info(
        "warm-up epoch %d/%d: train loss %.5f, validation loss %.5f",
        epoch + 1,
        settings.epochs,
        total / len(train),
        validation_loss,
    )
