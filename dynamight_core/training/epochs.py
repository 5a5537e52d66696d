"""Pieces shared by the resumable training loops: the consensus fit, the warm-up, the VAE.

* :func:`loop_state` / :func:`restore_loop_state`: what a checkpoint of a loop holds
  besides the loop's own counters -- the model, the optimizer (and scheduler) and the
  state of every random number generator -- so that a resumed loop repeats the
  uninterrupted computation bit for bit.
* :class:`DivergenceGuard`: stops a loop with
  :class:`~dynamight_core.errors.TrainingDivergedError` as soon as a loss or a parameter
  is NaN or infinite, before anything is saved or written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from dynamight_core.device import rng_state, set_rng_state
from dynamight_core.errors import TrainingDivergedError


def loop_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> dict[str, Any]:
    """Model, optimizer, scheduler and random-number states, for a checkpoint."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_state(),
    }


def restore_loop_state(
    saved: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """Put back what :func:`loop_state` saved (tensors move to the model's device)."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])


@dataclass(frozen=True)
class DivergenceGuard:
    """Checks that a loop's losses and parameters stay finite.

    Attributes
    ----------
    stage
        The stage name reported in the error (e.g. ``"train-vae"``).
    advice
        What the user should change, naming the settings as written in ``config.yaml``
        (e.g. ``"Lower vae.lr tenfold and run again"``).
    """

    stage: str
    advice: str

    def loss(self, value: torch.Tensor | float, where: str, what: str = "training loss") -> float:
        """``value`` as a float; raises ``TrainingDivergedError`` if it is not finite."""
        number = value.item() if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(number):
            raise TrainingDivergedError(self.stage, where, what, number, self.advice)
        return number

    def parameters(self, module: torch.nn.Module, where: str) -> None:
        """Raise ``TrainingDivergedError`` if any parameter of ``module`` is not finite."""
        for name, parameter in module.named_parameters():
            finite = torch.isfinite(parameter.detach())
            if not bool(finite.all()):
                bad = parameter.detach()[~finite][0]
                raise TrainingDivergedError(
                    self.stage, where, f"parameter {name}", float(bad), self.advice
                )
