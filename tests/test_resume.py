"""A reconstruction killed with SIGKILL mid-run resumes and gives the same maps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from workflow_tools import make_workdir, snakemake

pytestmark = pytest.mark.slow

CONFIGS = ("config.yaml", "ci.yaml", "resume.yaml")
TARGET = "results/consensus/full.mrc"
RESUME_OVERLAY = (
    "simulate: {n_particles: 1000}\nreconstruct: {batch_size: 8, checkpoint_every: 4}\n"
)


def _wait_for_mid_run_checkpoint(folder: Path, process: subprocess.Popen[str]) -> None:
    """Until task 1 is finished and the running task has saved progress after it."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        first, running = folder / "task_0.pt", folder / "running.pt"
        if first.exists() and running.exists() and running.stat().st_mtime > first.stat().st_mtime:
            return
        if process.poll() is not None:
            pytest.fail(
                "the workflow finished before it could be killed:\n"
                + (process.stdout.read() if process.stdout else "")
            )
        time.sleep(0.02)
    pytest.fail("no checkpoint appeared within 10 minutes")


def _stage_pid(marker: str) -> int | None:
    """PID of the running stage whose command line contains ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "-m dynamight_core" in command and marker in command:
            return int(entry.name)
    return None


def _maps(folder: Path) -> list[np.ndarray]:
    return [mrcfile.read(folder / f"{name}.mrc") for name in ("half1", "half2", "full")]


def _prepared_workdir(folder: Path) -> Path:
    workdir = make_workdir(folder)
    (workdir / "resume.yaml").write_text(RESUME_OVERLAY)
    prepared = snakemake(workdir, "--cores", "2", "results/halves.csv", configfiles=CONFIGS)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    return workdir


def _assert_resumed_and_identical(workdir: Path, reference: Path) -> None:
    log = (workdir / "results/logs/reconstruct_consensus.log").read_text()
    assert "restored from its checkpoint" in log and "resuming from checkpoint: task" in log, log
    assert not (workdir / "results/.checkpoints/reconstruct_consensus").exists()
    command = [
        sys.executable,
        "-m",
        "dynamight_core",
        "reconstruct",
        "--star",
        str(workdir / "results/simulated/particles.star"),
        "--halves",
        str(workdir / "results/halves.csv"),
        "--batch-size",
        "8",
        "--threads",
        "2",
        "--out-half1",
        str(reference / "half1.mrc"),
        "--out-half2",
        str(reference / "half2.mrc"),
        "--out-full",
        str(reference / "full.mrc"),
    ]
    subprocess.run(command, check=True, capture_output=True)
    for resumed_map, uninterrupted_map in zip(
        _maps(workdir / "results/consensus"), _maps(reference), strict=True
    ):
        np.testing.assert_array_equal(resumed_map, uninterrupted_map)


def test_killed_stage_is_retried_and_resumes(tmp_path: Path) -> None:
    """SIGKILL of the stage (as SLURM does at a time limit): the retry resumes."""
    workdir = _prepared_workdir(tmp_path / "run")
    process = snakemake(
        workdir, "--cores", "2", "--retries", "1", TARGET, configfiles=CONFIGS, popen=True
    )
    _wait_for_mid_run_checkpoint(workdir / "results/.checkpoints/reconstruct_consensus", process)
    pid = _stage_pid("reconstruct")
    assert pid is not None, "the reconstruction stage is not running"
    os.kill(pid, signal.SIGKILL)
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-3000:]
    _assert_resumed_and_identical(workdir, tmp_path / "uninterrupted")


def test_killed_workflow_reruns_incomplete_job_and_resumes(tmp_path: Path) -> None:
    """SIGKILL of snakemake and its job (a lost head node): unlock, re-run, resume."""
    workdir = _prepared_workdir(tmp_path / "run")
    process = snakemake(workdir, "--cores", "2", TARGET, configfiles=CONFIGS, popen=True)
    _wait_for_mid_run_checkpoint(workdir / "results/.checkpoints/reconstruct_consensus", process)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert not (workdir / "results/consensus/full.mrc").exists()
    unlocked = snakemake(workdir, "--unlock", configfiles=CONFIGS)
    assert unlocked.returncode == 0, unlocked.stderr[-2000:]
    resumed = snakemake(workdir, "--cores", "2", "--rerun-incomplete", TARGET, configfiles=CONFIGS)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    _assert_resumed_and_identical(workdir, tmp_path / "uninterrupted")
