"""Recovery from running out of memory during training, and a hook that forces it (tests).

A training loop that runs out of memory in an epoch halves its batch, goes back to the
state saved at the end of the last epoch (its last checkpoint) and runs the epoch again,
logging the change; out of memory at batch 1 is an
:class:`~dynamight_core.errors.InputError` naming the settings to lower.
:func:`check_forced_out_of_memory` raises the error a GPU would raise
at a chosen training step when ``DYNAMIGHT_FORCE_OOM_AT_STEP`` is set, so that the
recovery can be tested on any machine.
"""

from __future__ import annotations

import gc
import logging
import os
import traceback

import torch

from dynamight_core.errors import InputError

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


def batch_after(
    error: BaseException, batch: int, setting: str, settings: tuple[str, ...] = ()
) -> int:
    """The batch to continue with after ``error``: half of ``batch`` when it ran out of memory.

    Re-raises ``error`` when it is not an allocation failure. Out of memory at batch 1
    (nothing left to halve) raises an :class:`~dynamight_core.errors.InputError` naming
    ``settings``, the configuration keys that lower the need. ``setting`` names the batch
    size's key in the log line. Before the retry, the frames of the failed step are
    cleared, so that its tensors (and the batches it held) are freed before the allocator's
    cache is emptied.
    """
    if not is_out_of_memory(error):
        raise error
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    if batch <= 1:
        lower = [key for key in settings if key != setting] or ["the model's size"]
        raise InputError(
            setting,
            "out of memory",
            "a training step of one particle that fits in the device's memory",
            f"an allocation failure at {setting} 1 ({first_line})",
            "Lower one of " + ", ".join(lower) + " (or run on a device with more memory)",
        ) from error
    smaller = batch // 2
    logger.warning(
        "out of memory at %s %d (%s): halving it to %d and continuing from the last "
        "checkpoint (the end of the last complete epoch)",
        setting,
        batch,
        first_line,
        smaller,
    )
    release(error)
    return smaller


def release(error: BaseException) -> None:
    """Free what the failed step still holds through ``error``'s traceback; empty the cache.

    The frames of the traceback keep the step's tensors and its batch iterator alive until
    the error is dropped; clearing them (``traceback.clear_frames``; the running frames are
    left alone) releases both now, then the CUDA allocator gives its cached blocks back.
    """
    traceback.clear_frames(error.__traceback__)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
