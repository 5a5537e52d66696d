"""A reconstruction killed with SIGKILL mid-run resumes and gives the same maps."""

from __future__ import annotations

import contextlib
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


def _stage_pid(stage: str, workdir: Path) -> int | None:
    """PID of the ``python -m dynamight_core <stage>`` process running in ``workdir``.

    Not the ``bash -c`` wrapper Snakemake starts it in, whose command line holds the same
    words: killing that one would leave the stage itself running. Only processes whose
    working folder is ``workdir``, so that no other run on the machine is touched.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if argv[1:4] != ["-m", "dynamight_core", stage]:
            continue
        with contextlib.suppress(OSError):
            if (entry / "cwd").resolve() == workdir.resolve():
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
    pid = _stage_pid("reconstruct", workdir)
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


def _wait_until_gone(pid: int, timeout_s: float = 30) -> None:
    """Until process ``pid`` has ended (a zombie counts: it holds no lock)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return
        if "State:\tZ" in status:
            return
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.05)


def test_orphaned_job_blocks_a_second_copy_until_it_is_ended(tmp_path: Path) -> None:
    """SIGKILL of snakemake alone leaves its job running (an orphan).

    The re-run's copy of the job must not adopt the orphan's live checkpoint: it stops
    with the lock error naming the orphan's PID. The README's recovery -- end the orphan,
    ``snakemake --unlock``, re-run with ``--rerun-incomplete`` -- then resumes from the
    orphan's checkpoint and gives the uninterrupted maps. The orphan is frozen with
    SIGSTOP so it cannot finish while the second copy starts.
    """
    workdir = _prepared_workdir(tmp_path / "run")
    folder = workdir / "results/.checkpoints/reconstruct_consensus"
    process = snakemake(workdir, "--cores", "2", TARGET, configfiles=CONFIGS, popen=True)
    _wait_for_mid_run_checkpoint(folder, process)
    orphan = _stage_pid("reconstruct", workdir)
    assert orphan is not None, "the reconstruction stage is not running"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)  # not communicate(): the orphan keeps the output pipe open
    if process.stdout:
        process.stdout.close()
    os.kill(orphan, signal.SIGSTOP)
    rerun = ["--cores", "2", "--rerun-incomplete", TARGET]
    try:
        assert snakemake(workdir, "--unlock", configfiles=CONFIGS).returncode == 0
        blocked = snakemake(workdir, *rerun, configfiles=CONFIGS)
        assert blocked.returncode != 0, blocked.stdout[-3000:]
        # refused before it touches anything: at the log the orphan holds, naming its PID
        # on stderr (Snakemake's output), the orphan's log left as it was
        output = blocked.stdout + blocked.stderr
        assert "not started" in output and f"PID {orphan}" in output, output[-3000:]
        log = (workdir / "results/logs/reconstruct_consensus.log").read_text()
        assert log.startswith("log written by ") and f"PID {orphan}," in log, log[-3000:]
    finally:
        os.kill(orphan, signal.SIGKILL)
    _wait_until_gone(orphan)
    assert snakemake(workdir, "--unlock", configfiles=CONFIGS).returncode == 0
    resumed = snakemake(workdir, *rerun, configfiles=CONFIGS)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    _assert_resumed_and_identical(workdir, tmp_path / "uninterrupted")
