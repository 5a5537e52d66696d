"""What every resumable training loop shares: the consensus fit, the warm-up, the VAE.

* :class:`ResumableLoop`: a loop's checkpoint. It saves the model, the optimizer (and
  scheduler), the state of every random number generator and the loop's own values
  (counters, histories), and puts them all back on restart, so that a resumed loop repeats
  the uninterrupted computation: bit for bit on the CPU; on a GPU from the same state, but
  its atomic sums (``index_add_``, the backward pass of gathers) add in another order, so
  the results agree to floating-point reordering only.
* :func:`order_seed`: the one way a loop's seed and its epoch make the particle order.
* :class:`DivergenceGuard`: stops a loop with
  :class:`~dynamight_core.errors.TrainingDivergedError` as soon as a loss or a parameter
  is NaN or infinite, before anything is saved or written.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from dynamight_core.device import rng_state, set_rng_state
from dynamight_core.errors import TrainingDivergedError
from dynamight_core.io.checkpoint import Checkpointer


def order_seed(seed: int, epoch: int) -> int:
    """Seed of the particle order of ``epoch`` (0-based) in a loop seeded with ``seed``."""
    return seed * 100003 + epoch


def _loop_state(
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


def _restore_loop_state(
    saved: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """Put back what :func:`_loop_state` saved (tensors move to the model's device)."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])


class ResumableLoop:
    """The checkpoint of one training loop.

    Parameters
    ----------
    checkpointer
        Where the loop's state goes (``None``: nothing is saved or resumed).
    name
        File name of the state in the checkpoint folder.
    model, optimizer, scheduler
        What the loop trains; restored in place by :meth:`resume`.
    """

    def __init__(
        self,
        checkpointer: Checkpointer | None,
        name: str,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        self.checkpointer = checkpointer
        self.name = name
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler

    def resume(self) -> dict[str, Any] | None:
        """The loop's own saved values, after restoring model, optimizer and RNG states.

        ``None`` when there is nothing to resume (no checkpointer, no or another run's
        checkpoint).
        """
        saved = self.checkpointer.load(self.name) if self.checkpointer else None
        if saved is None:
            return None
        _restore_loop_state(saved, self.model, self.optimizer, self.scheduler)
        return dict(saved["loop"])

    def due(self, step: int) -> bool:
        """Whether step ``step`` (1-based) ends with a save."""
        return self.checkpointer is not None and self.checkpointer.due(step)

    def capture(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """An in-memory copy of what :meth:`save` writes (for :meth:`restore`)."""
        state = _loop_state(self.model, self.optimizer, self.scheduler)
        return copy.deepcopy({**state, "loop": dict(values)})

    def restore(self, captured: dict[str, Any]) -> dict[str, Any]:
        """Put back a :meth:`capture` (model, optimizer, RNG); returns the loop's values."""
        _restore_loop_state(captured, self.model, self.optimizer, self.scheduler)
        return copy.deepcopy(dict(captured["loop"]))

    def save(self, values: Mapping[str, Any]) -> None:
        """Save the states and the loop's ``values`` (tensors and plain Python values)."""
        if self.checkpointer is None:
            return
        state = _loop_state(self.model, self.optimizer, self.scheduler)
        self.checkpointer.save(self.name, {**state, "loop": dict(values)})


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
