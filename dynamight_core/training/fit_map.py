"""Fitting a Gaussian model to a map by least squares.

The residual ``r = w (render - map)`` is taken inside a soft weight ``w`` (the mask, or
the thresholded map grown by a voxel). The loss adds two terms: the real-space relative
error ``|r|^2 / |w map|^2``, and the mean over Fourier shells of the residual's power
divided by the weighted map's power in that shell. The second term gives every shell the
same say; without it the fit follows the low-resolution shells, which hold almost all the
power, and misses the map's detail near its resolution limit. The global mass scale is
first solved in closed form; then Adam moves positions, masses, widths and class
weights, with learning rates expressed as pixel-sized steps and decaying tenfold. A NaN or
infinite loss or parameter stops the fit with ``TrainingDivergedError`` before anything
is saved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.config_schema import default_of
from dynamight_core.geometry.fourier import hermitian_weights_3d, shell_index_3d
from dynamight_core.geometry.masks import mask_from_map
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.progress import track
from dynamight_core.training.epochs import DivergenceGuard, ResumableLoop

logger = logging.getLogger(__name__)

GUARD = DivergenceGuard(
    "fit-consensus",
    "Check the map and the mask for NaN or infinite values; if they are finite, lower the "
    "fit's step sizes (FitSettings.position_step_px and log_step) and run again",
)


@dataclass(frozen=True)
class FitSettings:
    """Optimisation settings of the map fit.

    Attributes
    ----------
    iterations
        Adam steps.
    position_step_px
        Learning rate of the positions, in pixels per step.
    log_step
        Learning rate of log-masses, width and class parameters.
    oversampling
        Renderer oversampling during the fit (1 is accurate enough against a map).
    log_every
        Log the loss every N steps.
    """

    iterations: int = default_of("gaussians", "iterations")
    position_step_px: float = 0.1
    log_step: float = 0.03
    oversampling: int = 1
    log_every: int = 50


AUTO_MASK_GROW_PX = 1.0
AUTO_MASK_SOFT_EDGE_PX = 2.0


def fit_weight(data: np.ndarray, threshold: float, mask: np.ndarray | None) -> np.ndarray:
    """The soft weight of the fit: the mask, or the thresholded map, grown by a voxel."""
    if mask is not None:
        return mask.astype(np.float32)
    return mask_from_map(
        data, threshold, extend_px=AUTO_MASK_GROW_PX, soft_edge_px=AUTO_MASK_SOFT_EDGE_PX
    )


def inverse_shell_power(weighted_target: torch.Tensor) -> torch.Tensor:
    """`(D, D, D//2+1)` weights ``multiplicity / (power of the shell)``, zero past Nyquist.

    Normalised so that a residual equal to the target in every shell scores 1.
    """
    box = weighted_target.shape[0]
    shells = shell_index_3d(box, weighted_target.device).clamp_(max=box // 2 + 1)
    multiplicity = hermitian_weights_3d(box, weighted_target.device)
    power = torch.fft.rfftn(weighted_target.double()).abs() ** 2 * multiplicity
    per_shell = torch.bincount(shells.flatten(), weights=power.flatten(), minlength=box // 2 + 2)
    inverse = (1.0 / per_shell.clamp(min=float(per_shell.max()) * 1e-10))[shells] * multiplicity
    inverse[shells > box // 2] = 0.0
    return (inverse / (box // 2 + 1)).to(weighted_target.dtype)


@torch.no_grad()
def solve_scale(
    model: GaussianModel, target: torch.Tensor, weight: torch.Tensor, oversampling: int
) -> float:
    """Multiply all masses by the least-squares optimal factor; returns the factor."""
    render = model.volume(oversampling=oversampling)
    scale = float((weight * render * target).sum() / (weight * render * render).sum())
    if scale > 0:
        model.log_masses.add_(float(np.log(scale)))
    return scale


def fit_model_to_map(
    model: GaussianModel,
    target: torch.Tensor,
    weight: torch.Tensor,
    settings: FitSettings,
    checkpointer: Checkpointer | None = None,
) -> list[float]:
    """Optimise ``model`` so its rendered volume matches ``target``.

    Parameters
    ----------
    model
        The seeded model (modified in place).
    target
        `(D, D, D)` map on the model's device.
    weight
        `(D, D, D)` soft weight of every voxel in the loss.
    settings
        Optimisation settings.
    checkpointer
        Saves the fit every ``checkpointer.every`` steps; a saved state is resumed.

    Returns
    -------
    list of float
        The relative loss at every step.
    """
    norm = float((weight * target * target).sum())
    shell_weights = inverse_shell_power(weight * target)
    groups = [
        {"params": [model.positions], "lr": settings.position_step_px / model.box_px},
        {
            "params": [model.log_masses, model.raw_widths, model.class_logits],
            "lr": settings.log_step,
        },
    ]
    optimizer = torch.optim.Adam(groups)
    decay = 0.1 ** (1.0 / max(settings.iterations, 1))
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=decay)
    loop = ResumableLoop(checkpointer, "fit", model, optimizer, scheduler)
    saved = loop.resume()
    losses: list[float] = []
    first = 0
    if saved is None:
        solve_scale(model, target, weight, settings.oversampling)
    else:
        losses, first = list(saved["losses"]), int(saved["step"])
        logger.info("resuming from checkpoint: step %d of %d", first + 1, settings.iterations)
    steps = range(first, settings.iterations)
    for step in track(steps, len(steps), "consensus fit", unit="steps", logger=logger):
        optimizer.zero_grad(set_to_none=True)
        residual = weight * (model.volume(oversampling=settings.oversampling) - target)
        spectrum = torch.fft.rfftn(residual)
        loss = (residual * residual).sum() / norm + (
            (spectrum.real**2 + spectrum.imag**2) * shell_weights
        ).sum()
        losses.append(GUARD.loss(loss, f"step {step + 1}", "loss of the fit"))
        loss.backward()
        optimizer.step()
        scheduler.step()
        if loop.due(step + 1) and step + 1 < settings.iterations:
            GUARD.parameters(model, f"step {step + 1}")
            loop.save({"losses": losses, "step": step + 1})
        if step % settings.log_every == 0 or step == settings.iterations - 1:
            logger.info(
                "fit step %d/%d: relative residual %.4f", step + 1, settings.iterations, losses[-1]
            )
    GUARD.parameters(model, f"the last step ({settings.iterations})")
    return losses
