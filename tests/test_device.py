"""Device choice: GPU claiming by lock files on multi-GPU workstations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from dynamight_core.device import claim_gpu, select_device


def test_cpu_when_no_gpu_visible() -> None:
    if not torch.cuda.is_available():
        assert select_device("auto").type == "cpu"


def test_concurrent_stages_claim_different_gpus(tmp_path: Path) -> None:
    assert claim_gpu(2, tmp_path) == 0
    script = (
        "import sys; from pathlib import Path; from dynamight_core.device import claim_gpu;"
        f"print(claim_gpu(2, Path({str(tmp_path)!r})))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == "1"
    assert claim_gpu(1, tmp_path / "missing") is None  # no lock can be made: share, no crash


def test_all_gpus_held_means_sharing(tmp_path: Path) -> None:
    assert claim_gpu(1, tmp_path) == 0
    script = (
        "from pathlib import Path; from dynamight_core.device import claim_gpu;"
        f"print(claim_gpu(1, Path({str(tmp_path)!r})))"
    )
    other = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == "None"
