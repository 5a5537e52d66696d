"""Recovery from running out of memory during training, and a hook that forces it (tests).

A training loop that runs out of memory in an epoch halves its batch, goes back to the
state saved at the end of the last epoch (its last checkpoint) and runs the epoch again,
logging the change. :func:`check_forced_out_of_memory` raises the error a GPU would raise
at a chosen training step when ``DYNAMIGHT_FORCE_OOM_AT_STEP`` is set, so that the
recovery can be tested on any machine.
"""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)

FORCE_OOM_VARIABLE = "DYNAMIGHT_FORCE_OOM_AT_STEP"
CPU_MESSAGES = ("can't allocate memory", "out of memory", "not enough memory")

_steps_taken = {"count": 0, "fired": 0}


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (CUDA, or the CPU allocator's)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    if isinstance(error, RuntimeError):
        message = str(error).lower()
        return any(text in message for text in CPU_MESSAGES)
    return False


def check_forced_out_of_memory() -> None:
    """Count a training step; raise ``torch.OutOfMemoryError`` at the step the variable names.

    ``DYNAMIGHT_FORCE_OOM_AT_STEP=N`` fails the N-th training step (1-based, counted over
    the whole process) once; unset, this only counts.
    """
    _steps_taken["count"] += 1
    wanted = os.environ.get(FORCE_OOM_VARIABLE, "")
    if not wanted.isdigit() or _steps_taken["fired"]:
        return
    if _steps_taken["count"] == int(wanted):
        _steps_taken["fired"] = 1
        raise torch.OutOfMemoryError(
            f"out of memory at training step {wanted} (forced by {FORCE_OOM_VARIABLE})"
        )


def batch_after(error: BaseException, batch: int, setting: str) -> int:
    """The batch to continue with after ``error``: half of ``batch`` when it ran out of memory.

    Re-raises ``error`` when it is not an allocation failure, or when the batch is already
    1. ``setting`` names the configuration key in the log line.
    """
    if not is_out_of_memory(error) or batch <= 1:
        raise error
    smaller = batch // 2
    logger.warning(
        "out of memory at %s %d (%s): halving it to %d and continuing from the last "
        "checkpoint (the end of the last complete epoch)",
        setting,
        batch,
        str(error).splitlines()[0] if str(error) else type(error).__name__,
        smaller,
    )
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return smaller
