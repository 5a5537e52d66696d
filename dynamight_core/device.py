"""Device choice, thread count, seeding and the state of the random number generators.

A stage runs on CUDA whenever a GPU is visible (SLURM sets ``CUDA_VISIBLE_DEVICES``) and
on the CPU otherwise; no stage hard-codes a GPU index. A job that was given a GPU which
torch cannot use (a CPU build of torch, or a CUDA build without a working driver) stops
with an error naming the fix instead of running silently, many times slower, on the CPU;
``--device cpu`` (or a stage's ``resources.<stage>.gpu: 0``) runs on the CPU on purpose.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch

from dynamight_core.config_site import NVIDIA_GPUS, driver_sees_gpu
from dynamight_core.errors import InputError

logger = logging.getLogger(__name__)

_selected: dict[str, str] = {}
_held_locks: list[IO[str]] = []


def claim_gpu(count: int, lock_dir: Path | None = None) -> int | None:
    """Claim a GPU that no other dynamight process on this machine holds.

    On a workstation several stages may run at once (``--resources gpu=N``) and nothing
    assigns GPUs to them; each stage takes an exclusive lock file per GPU index and keeps
    it until the process ends. Under SLURM only the allocated GPUs are visible.

    Parameters
    ----------
    count
        Number of visible GPUs.
    lock_dir
        Folder for the lock files (the system's temporary folder by default).

    Returns
    -------
    int or None
        The claimed index, or ``None`` when every GPU is held (the caller then shares).
    """
    folder = lock_dir or Path(tempfile.gettempdir())
    for index in range(count):
        try:
            handle = open(folder / f"dynamight-gpu-{index}.lock", "a")  # noqa: SIM115
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _held_locks.append(handle)
        return index
    return None


def _least_used_gpu(count: int) -> int:
    free = [torch.cuda.mem_get_info(index)[0] for index in range(count)]
    return max(range(count), key=free.__getitem__)


GPU_ENV = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS")


def allocated_gpus(env: dict[str, str] | None = None, driver: Path = NVIDIA_GPUS) -> str | None:
    """What says this job was given an NVIDIA GPU (e.g. ``CUDA_VISIBLE_DEVICES=0``), or None.

    A GPU is taken as given when the job's environment names one (SLURM sets these for a
    job with ``--gpus``/``--gres``) and the NVIDIA driver sees a GPU on the machine, so a
    test cluster's fake GPUs (no driver) count as none.
    """
    values = os.environ if env is None else env
    named = [
        f"{key}={values[key]}"
        for key in GPU_ENV
        if values.get(key, "").strip() not in ("", "-1", "NoDevFiles")
    ]
    return ", ".join(named) if named and driver_sees_gpu(driver) else None


def check_gpu_usable(given: str | None) -> None:
    """Fail when the job was given a GPU that torch cannot use.

    ``given``: what says the job has a GPU (:func:`allocated_gpus`), ``None`` when none.

    Raises
    ------
    InputError
        Naming the torch build found and the command that installs a CUDA build.
    """
    if given is None or torch.cuda.is_available():
        return
    cpu_build = torch.version.cuda is None
    found = (
        f"torch {torch.__version__}, a CPU-only build"
        if cpu_build
        else f"torch {torch.__version__} (CUDA {torch.version.cuda}) that sees no usable GPU"
    )
    hint = (
        "Install a CUDA build in the project's environment: `make install TORCH_BUILD=cu126` "
        "(or cu129, cu130, cu132, to match the driver; `nvidia-smi` shows its CUDA version)"
        if cpu_build
        else "Check the NVIDIA driver (`nvidia-smi`) and that torch's CUDA version is not newer "
        "than the driver's"
    )
    raise InputError(
        "torch",
        "device",
        f"a torch that can use the GPU this job was given ({given})",
        found,
        hint + "; or run on the CPU on purpose: --device cpu, or resources.<stage>.gpu: 0",
    )


def select_device(requested: str = "auto") -> torch.device:
    """Return the compute device.

    Parameters
    ----------
    requested
        ``"auto"`` (CUDA if visible, else CPU), ``"cpu"``, or ``"cuda"``.

    Raises
    ------
    InputError
        With ``"auto"``, when the job was given a GPU that torch cannot use
        (:func:`check_gpu_usable`).
    """
    if requested == "auto":
        check_gpu_usable(allocated_gpus())
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            device = torch.device("cpu")
        elif count == 1:
            device = torch.device("cuda", 0)
        else:
            claimed = claim_gpu(count)
            device = torch.device("cuda", _least_used_gpu(count) if claimed is None else claimed)
    else:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was requested but no GPU is visible to this job")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        logger.info("device: %s (%s)", device, name)
    else:
        name = f"cpu ({torch.get_num_threads()} threads)"
        logger.info("device: %s", name)
    _selected.update(device=str(device), name=name)
    return device


def describe_device() -> dict[str, str]:
    """The device chosen by :func:`select_device` in this process (empty if none)."""
    return dict(_selected)


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


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a stage may draw from.

    Covers torch on the CPU and on every visible GPU, NumPy's global generator and
    Python's ``random``, as tensors and plain values, so a checkpoint holding it loads
    with ``torch.load(weights_only=True)``. See :func:`set_rng_state`.
    """
    state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())  # noqa: NPY002
    name, keys, position, has_gauss, cached = state
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [str(name), torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put every generator back into a state from :func:`rng_state`.

    The GPU generators are restored when the same number of GPUs is visible; otherwise
    the run continues (on another device it cannot repeat the GPU's draws anyway) with a
    warning that it will not be bit-identical to an uninterrupted one.
    """
    torch.set_rng_state(state["torch"])
    saved_cuda = list(state["cuda"])
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if saved_cuda and len(saved_cuda) == visible:
        torch.cuda.set_rng_state_all(saved_cuda)
    elif saved_cuda or visible:
        logger.warning(
            "checkpoint made with %d GPUs, resumed with %d: the resumed run will not be "
            "bit-identical to an uninterrupted one",
            len(saved_cuda),
            visible,
        )
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state(  # noqa: NPY002 - restores third-party code's global RNG
        (name, keys.numpy().astype(np.uint32), int(position), int(has_gauss), float(cached))
    )
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss_next))
