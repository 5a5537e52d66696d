"""The schema's site sections: what each stage asks the cluster for, and the SLURM settings.

Part of the configuration schema (:mod:`dynamight_core.config_schema` merges these
sections into ``SCHEMA``); used by the SLURM executor (``--profile slurm``) and ignored by
local runs except ``resources.<stage>.cpus`` (threads). Standard library only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dynamight_core.config_key import Key

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")
"""One folder per GPU the NVIDIA driver sees: present only on a machine with one."""


def driver_sees_gpu(driver: Path = NVIDIA_GPUS) -> bool:
    """Whether this machine's NVIDIA driver sees a GPU (standard library only: no torch)."""
    return driver.is_dir() and any(driver.iterdir())


# upper bounds of a stage's request: a typo (mem_mb: 100000000000) fails validation instead
# of reaching sbatch, which queues an impossible job for ever or rejects it after the DAG ran
MAX_CPUS = 256
MAX_MEM_MB = 4_000_000  # 4 TB
MAX_RUNTIME_MIN = 30 * 24 * 60  # 30 days


def _resources(gpu: int, cpus: int, mem_mb: int, runtime_min: int) -> dict[str, Key]:
    return {
        "gpu": Key("int", gpu, "GPUs requested (0 or 1)", 0, 1),
        "cpus": Key("int", cpus, f"CPU cores (threads) requested (1 to {MAX_CPUS})", 1, MAX_CPUS),
        "mem_mb": Key(
            "int",
            mem_mb,
            f"memory in MB (100 to {MAX_MEM_MB}), multiplied by the attempt on retry",
            100,
            MAX_MEM_MB,
        ),
        "runtime_min": Key(
            "int",
            runtime_min,
            f"wall time in minutes (1 to {MAX_RUNTIME_MIN}); a retry asks for the same if the "
            "stage resumes from its checkpoint, else for attempt x this (capped by "
            "slurm.max_runtime_min)",
            1,
            MAX_RUNTIME_MIN,
        ),
    }


SITE_SECTIONS: dict[str, Any] = {
    "resources": {
        "simulate": _resources(0, 2, 4000, 30),
        "split_halves": _resources(0, 1, 2000, 10),
        "reconstruct_consensus": _resources(1, 4, 16000, 120),
        "fsc_consensus": _resources(0, 1, 4000, 10),
        "fit_consensus": _resources(1, 4, 16000, 60),
        "warmup": _resources(1, 4, 16000, 120),
        "store_particles": _resources(0, 4, 8000, 240),
        "train_vae": _resources(1, 4, 32000, 1440),
        "deformation_error": _resources(1, 4, 16000, 120),
        "fit_inverse": _resources(1, 4, 16000, 120),
        "backproject_deformed": _resources(1, 4, 16000, 240),
        "solve_deformed": _resources(1, 4, 16000, 480),
        "fsc_deformed": _resources(0, 1, 4000, 10),
        "align_halves": _resources(0, 1, 4000, 10),
        "state_maps": _resources(1, 4, 16000, 240),
        "fsc_states": _resources(0, 1, 4000, 10),
        "make_mask": _resources(0, 1, 4000, 10),
        "postprocess": _resources(0, 1, 4000, 20),
        "local_resolution": _resources(1, 4, 16000, 60),
        "latent_space": _resources(0, 2, 8000, 30),
        # give explore_maps a GPU when explore.reconstruct_nearest > 0
        "explore_maps": _resources(0, 2, 8000, 30),
        "explore_movie": _resources(0, 2, 8000, 30),
        "report": _resources(0, 1, 4000, 10),
    },
    # site settings, used by the SLURM executor (--profile slurm) and ignored by local runs
    "slurm": {
        "gpu_request": Key(
            "str",
            "gpus",
            "how GPU stages ask SLURM for GPUs: gpus (sbatch --gpus=N, needs "
            "select/cons_tres) or gres (--gres=gpu:N, also with select/cons_res)",
            choices=("gpus", "gres"),
        ),
        "gpu_type": Key(
            "str",
            None,
            "GPU type in the site's GRES, e.g. a100 (--gpus=a100:N or --gres=gpu:a100:N); "
            "null: any GPU",
            nullable=True,
        ),
        "gpu_partition": Key(
            "str",
            None,
            "partition for the GPU stages (null: the profile's or the cluster's default, "
            "as for the CPU stages)",
            nullable=True,
        ),
        "max_runtime_min": Key(
            "int",
            None,
            "longest wall time in minutes any job asks for, e.g. the partitions' time "
            "limit (null: no cap)",
            1,
            MAX_RUNTIME_MIN,
            nullable=True,
        ),
    },
}
