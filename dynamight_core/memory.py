"""Memory a stage may use, and the batch that fits in it.

:func:`device_memory_bytes` tells how much a stage may still allocate (GPU free memory, or
the host's available memory within its cgroup and SLURM grant, the grant net of what the
process already holds); :func:`choose_batch_size` halves a requested batch until a step's
estimated peak fits, or raises
:class:`~dynamight_core.errors.MemoryPlanError` naming the settings to change. The estimates
themselves live with what they estimate (``training/memory.py``, ``reconstruct/memory.py``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import torch

from dynamight_core.errors import MemoryPlanError

logger = logging.getLogger(__name__)


class ByteBreakdown:
    """Mixin of a dataclass whose fields are the bytes of a step's parts."""

    @property
    def total_bytes(self) -> float:
        """Estimated peak of the step (bytes): the sum of the parts."""
        return float(sum(getattr(self, item.name) for item in fields(self)))  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line for the logs: the total and each non-zero part, in GB."""
        parts = [
            f"{item.name.removesuffix('_bytes')} {getattr(self, item.name) / 1e9:.3g}"
            for item in fields(self)  # type: ignore[arg-type]
            if getattr(self, item.name)
        ]
        return f"{self.total_bytes / 1e9:.3g} GB (" + ", ".join(parts) + ")"


# ---------------------------------------------------------------------------------------------

MEMINFO = Path("/proc/meminfo")
STATM = Path("/proc/self/statm")
CGROUP_V2 = Path("/sys/fs/cgroup")
CGROUP_V1 = Path("/sys/fs/cgroup/memory")
NO_LIMIT_BYTES = 2**60  # cgroup v1 reports "no limit" as a huge number near 2^63


def _read_int(path: Path) -> int | None:
    """The integer in a one-line file; None if absent, unreadable or ``max``."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available_bytes(meminfo: Path) -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_free_bytes(v2_root: Path, v1_root: Path) -> int | None:
    """Limit minus usage of this process's memory cgroup (v2, else v1); None if unlimited."""
    for limit_file, usage_file in (
        (v2_root / "memory.max", v2_root / "memory.current"),
        (v1_root / "memory.limit_in_bytes", v1_root / "memory.usage_in_bytes"),
    ):
        limit = _read_int(limit_file)
        if limit is not None and limit < NO_LIMIT_BYTES:
            return max(limit - (_read_int(usage_file) or 0), 0)
    return None


def _slurm_bytes(environ: dict[str, str]) -> int | None:
    """Memory SLURM granted the job (``SLURM_MEM_PER_NODE``, or per CPU times CPUs), bytes."""
    per_node = environ.get("SLURM_MEM_PER_NODE", "")
    if per_node.isdigit():
        return int(per_node) * 1024**2
    per_cpu = environ.get("SLURM_MEM_PER_CPU", "")
    cpus = environ.get("SLURM_CPUS_PER_TASK", environ.get("SLURM_CPUS_ON_NODE", "1"))
    if per_cpu.isdigit():
        return int(per_cpu) * 1024**2 * (int(cpus) if cpus.isdigit() else 1)
    return None


def resident_bytes(statm: Path = STATM) -> int:
    """Resident memory of this process now, in bytes (its baseline before a step).

    The second field of ``/proc/self/statm`` (pages) times the page size; where that file
    is missing, the peak resident size from ``resource.getrusage`` (an upper bound).
    """
    try:
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource  # not on Windows; statm is read on Linux

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _slurm_left_bytes(environ: dict[str, str], resident: int | None) -> int | None:
    """The SLURM grant less what this process already holds (torch, the data), bytes.

    The grant is a total for the job, unlike the other limits, which are already net of
    this process's use; ``resident`` defaults to :func:`resident_bytes` now.
    """
    grant = _slurm_bytes(environ)
    if grant is None:
        return None
    held = resident_bytes() if resident is None else resident
    logger.info(
        "SLURM granted %.2f GB; this process already holds %.2f GB of it",
        grant / 1e9,
        held / 1e9,
    )
    return max(grant - held, 0)


def host_memory_bytes(
    meminfo: Path = MEMINFO,
    cgroup_v2: Path = CGROUP_V2,
    cgroup_v1: Path = CGROUP_V1,
    environ: dict[str, str] | None = None,
    resident: int | None = None,
) -> int:
    """Bytes of host memory this process may still use.

    The smallest of: ``MemAvailable`` of ``/proc/meminfo``; the memory cgroup's limit minus
    its usage (cgroup v2 ``memory.max - memory.current``, else v1 ``memory.limit_in_bytes
    - memory.usage_in_bytes``; SLURM confines jobs in one); the job's SLURM grant
    (``SLURM_MEM_PER_NODE``, or ``SLURM_MEM_PER_CPU`` times the task's CPUs, in MB), which is
    a total, less this process's resident memory at the time of the call (``resident``
    bytes, default :func:`resident_bytes`): a Python process with torch and the data loaded
    holds hundreds of MB before its first step. The paths, environment and resident size
    are parameters for tests.
    """
    candidates = [
        _meminfo_available_bytes(meminfo),
        _cgroup_free_bytes(cgroup_v2, cgroup_v1),
        _slurm_left_bytes(dict(os.environ) if environ is None else environ, resident),
    ]
    known = [value for value in candidates if value is not None]
    if not known:
        raise RuntimeError(f"cannot tell the available memory: {meminfo} is unreadable")
    return min(known)


def device_memory_bytes(device: torch.device) -> int:
    """Bytes a stage may still allocate on ``device``.

    CUDA: the free memory of the GPU (``torch.cuda.mem_get_info``; other processes' use is
    already subtracted, this process's cached blocks are not counted as free). CPU:
    :func:`host_memory_bytes`.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return host_memory_bytes()


def choose_batch_size(
    requested: int,
    estimate_bytes: Callable[[int], float],
    capacity_bytes: float,
    *,
    safety: float = 0.8,
    minimum: int = 1,
    step: str = "training step",
    batch_key: str = "vae.batch_size",
    settings: tuple[str, ...] = ("vae.batch_size",),
) -> int:
    """The requested batch if its step fits in ``safety x capacity``, else the largest half.

    Halves the batch (``requested``, ``requested // 2``, ...) down to ``minimum`` and returns
    the first that fits, logging the choice with its estimate and the capacity.

    Parameters
    ----------
    requested
        The configured batch size.
    estimate_bytes
        Estimated peak bytes of a step at a given batch size.
    capacity_bytes
        Memory available to the step (see :func:`device_memory_bytes`).
    safety
        Fraction of the capacity the estimate may use (the rest covers what it omits).
    minimum
        Smallest batch to accept.
    step, batch_key, settings
        For messages: what runs, the batch size's configuration key, and the keys that
        lower the need (named in the error).

    Raises
    ------
    MemoryPlanError
        When even ``minimum`` does not fit.
    """
    usable = safety * capacity_bytes
    batch = max(requested, minimum)
    while True:
        needed = estimate_bytes(batch)
        if needed <= usable:
            break
        if batch // 2 < minimum:
            raise MemoryPlanError(step, batch_key, batch, needed, usable, settings)
        batch //= 2
    if batch < requested:
        logger.warning(
            "%s: %s %d needs about %.2f GB, more than %.0f%% of the %.2f GB available; "
            "using batch %d (about %.2f GB)",
            step,
            batch_key,
            requested,
            estimate_bytes(requested) / 1e9,
            100 * safety,
            capacity_bytes / 1e9,
            batch,
            needed / 1e9,
        )
    else:
        logger.info(
            "%s: batch %d needs about %.2f GB of the %.2f GB available",
            step,
            batch,
            needed / 1e9,
            capacity_bytes / 1e9,
        )
    return batch
