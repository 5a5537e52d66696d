"""Running the workflow from tests: a scratch working folder and a snakemake subprocess."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from dynamight_core.config import describe

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"
# every stage fits the 2-CPU test machines (and the one-node test cluster, whose memory
# is that of the machine): the demo needs under 1 GB per job. One thread per job, so that
# two jobs (the half sets) run side by side: faster on 2 cores than one 2-thread job at a
# time (torch's second thread gains less than a second job)
STAGES = dict.fromkeys(key.split(".")[1] for key, _ in describe() if key.startswith("resources."))
CI_OVERLAY = "resources:\n" + "".join(f"  {stage}: {{cpus: 1, mem_mb: 3000}}\n" for stage in STAGES)


# the workflow's rules by what they ask SLURM for (deformed.method adjoint: no fit_inverse)
GPU_RULES = {
    "reconstruct_consensus",
    "fit_consensus",
    "warmup",
    "train_vae",
    "deformation_error",
    "backproject_deformed",
    "solve_deformed",
    "local_resolution",
}
CPU_RULES = {
    "simulate",
    "split_halves",
    "store_particles",
    "fsc_consensus",
    "fsc_deformed",
    "align_halves",
    "make_mask",
    "postprocess",
    "latent_space",
    "explore_maps",
    "explore_movie",
}
# rules that run where snakemake runs (localrules), never as SLURM jobs
LOCAL_RULES = {"provenance", "report"}


def kill_at_first_checkpoint(command: list[str], checkpoint: Path, timeout_s: float = 300) -> None:
    """Start ``command``, SIGKILL it as soon as the file ``checkpoint`` appears."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while not checkpoint.exists():
        assert process.poll() is None, f"finished before {checkpoint.name} was written"
        assert time.monotonic() < deadline, f"no {checkpoint.name} within {timeout_s:.0f} s"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def make_workdir(folder: Path) -> Path:
    """A working folder with the shipped config.yaml and the CI resource overlay."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config.yaml", folder / "config.yaml")
    (folder / "ci.yaml").write_text(CI_OVERLAY)
    return folder


def snakemake(
    workdir: Path,
    *args: str,
    timeout: float = 1200,
    popen: bool = False,
    configfiles: tuple[str, ...] = ("config.yaml", "ci.yaml"),
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """Run snakemake on the repository's Snakefile in ``workdir``."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    command = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if configfiles:
        command += ["--configfile", *configfiles]
    command += list(args)
    if popen:
        return subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    return subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    jobs: dict[str, int] = {}
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("job ")) + 2
    except StopIteration:
        return jobs
    for line in lines[start:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match or match.group(1) == "total":
            break
        jobs[match.group(1)] = int(match.group(2))
    return jobs


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """Output of a successful run (the test fails with the output's tail otherwise)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def train_vae_command(
    star: Path,
    halves: Path,
    model: Path,
    out: Path,
    *settings: str,
    checkpoint: Path | None = None,
) -> list[str]:
    """``python -m dynamight_core train-vae`` for half set 1, writing into folder ``out``."""
    command = [sys.executable, "-m", "dynamight_core", "train-vae", *settings]
    command += ["--star", str(star), "--halves", str(halves), "--half", "1", "--model", str(model)]
    for flag, name in (
        ("--out-model", "model.pt"),
        ("--out-latents", "latents.csv"),
        ("--out-history", "training.tsv"),
        ("--out-png", "training.png"),
    ):
        command += [flag, str(out / name)]
    if checkpoint:
        command += ["--checkpoint-dir", str(checkpoint)]
    return command
