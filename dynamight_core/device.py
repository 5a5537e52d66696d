"""Device choice, thread count and seeding.

A stage runs on CUDA whenever a GPU is visible (SLURM sets ``CUDA_VISIBLE_DEVICES``) and
on the CPU otherwise; no stage hard-codes a GPU index.
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

logger = logging.getLogger(__name__)


def select_device(requested: str = "auto") -> torch.device:
    """Return the compute device.

    Parameters
    ----------
    requested
        ``"auto"`` (CUDA if visible, else CPU), ``"cpu"``, or ``"cuda"``.
    """
    if requested == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but no GPU is visible to this job")
    if device.type == "cuda":
        logger.info("device: %s (%s)", device, torch.cuda.get_device_name(device))
    else:
        logger.info("device: cpu (%d threads)", torch.get_num_threads())
    return device


def configure_threads(n_threads: int | None = None) -> int:
    """Set the number of CPU threads torch uses.

    Parameters
    ----------
    n_threads
        Explicit thread count; if ``None``, use ``SLURM_CPUS_PER_TASK`` when set, else
        leave torch's default.

    Returns
    -------
    int
        The thread count in effect.
    """
    if n_threads is None:
        slurm = os.environ.get("SLURM_CPUS_PER_TASK")
        n_threads = int(slurm) if slurm and slurm.isdigit() else None
    if n_threads is not None and n_threads > 0:
        torch.set_num_threads(n_threads)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch random number generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 - seeds third-party code using the global RNG
    torch.manual_seed(seed)
