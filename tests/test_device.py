"""Device choice: GPU claiming by lock files on multi-GPU workstations; a GPU torch cannot use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynamight_core.device import allocated_gpus, check_gpu_usable, claim_gpu, select_device
from dynamight_core.errors import InputError


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


def test_a_gpu_given_to_the_job_is_seen_only_with_the_driver(tmp_path: Path) -> None:
    driver = tmp_path / "gpus"
    given = {"CUDA_VISIBLE_DEVICES": "1", "SLURM_JOB_GPUS": "1"}
    assert allocated_gpus(given, driver) is None  # a test cluster's fake GPU: no driver
    (driver / "0000:3b:00.0").mkdir(parents=True)
    assert allocated_gpus(given, driver) == "CUDA_VISIBLE_DEVICES=1, SLURM_JOB_GPUS=1"
    for hidden in ("", "-1", "NoDevFiles"):
        assert allocated_gpus({"CUDA_VISIBLE_DEVICES": hidden}, driver) is None


def test_a_gpu_torch_cannot_use_stops_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    check_gpu_usable(None)  # no GPU given: the CPU, as always
    with pytest.raises(InputError, match="CPU-only build") as error:
        check_gpu_usable("CUDA_VISIBLE_DEVICES=0")
    assert "make install TORCH_BUILD=cu126" in str(error.value)
    assert "--device cpu" in str(error.value)
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    with pytest.raises(InputError, match="sees no usable GPU"):
        check_gpu_usable("CUDA_VISIBLE_DEVICES=0")


def test_cpu_on_purpose_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dynamight_core.device.allocated_gpus", lambda: "CUDA_VISIBLE_DEVICES=0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("cpu").type == "cpu"
    with pytest.raises(InputError):
        select_device("auto")
