"""The shipped cluster profile as users run it, and how jobs are retried."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_tools import (
    BIN,
    CPU_RULES,
    GPU_RULES,
    LOCAL_RULES,
    REPO,
    SNAKEMAKE,
    make_workdir,
    ok,
    planned_jobs,
)

pytestmark = pytest.mark.slow

SLURM_COMMANDS = ("sbatch", "srun", "sinfo", "squeue", "sacct", "scontrol", "sacctmgr", "sshare")


def _checkout(destination: Path) -> Path:
    """The working tree as a user's checkout has it: tracked and untracked, not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # tracked files deleted in the working tree are not there
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkout(tmp_path_factory.mktemp("checkout"))


@pytest.fixture
def no_cluster(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose SLURM commands only record that they were called, and fail."""
    stubs, calls = tmp_path / "stubs", tmp_path / "slurm-calls.txt"
    stubs.mkdir()
    for name in SLURM_COMMANDS:
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 1\n')
        stub.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if key != "SNAKEMAKE_PROFILE"}
    env["PATH"] = os.pathsep.join([str(stubs), str(BIN), env.get("PATH", "")])
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no ~/.config/snakemake/slurm
    return env, calls


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def _submissions(calls: Path) -> list[str]:
    """The calls of SLURM commands that submit or start jobs."""
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [line for line in lines if line.split()[0] in ("sbatch", "srun")]


def _resources(output: str) -> dict[str, list[dict[str, str]]]:
    """Rule -> the resources of each of its jobs as Snakemake printed them, in order."""
    jobs: dict[str, list[dict[str, str]]] = {}
    rule = None
    for line in output.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line.strip()):
            rule = match.group(1)
        elif rule and line.strip().startswith("resources:"):
            pairs = line.strip().removeprefix("resources:").split(", ")
            jobs.setdefault(rule, []).append(
                dict(pair.strip().split("=", 1) for pair in pairs if "=" in pair)
            )
            rule = None
    return jobs


def test_slurm_profile_dry_run_from_a_fresh_checkout(
    checkout: Path, no_cluster: tuple[dict[str, str], Path]
) -> None:
    """`snakemake --profile slurm -n` from the root of a checkout, verbatim, with no cluster."""
    env, calls = no_cluster
    output = ok(_run([str(SNAKEMAKE), "--profile", "slurm", "-n"], checkout, env))
    assert "Using profile slurm" in output
    assert set(planned_jobs(output)) == GPU_RULES | CPU_RULES | LOCAL_RULES | {"all"}
    jobs = _resources(output)
    for rule in GPU_RULES | CPU_RULES:
        for job in jobs[rule]:
            assert job["gpu"] == ("1" if rule in GPU_RULES else "0"), (rule, job)
            assert "gres" not in job and "slurm_partition" not in job, (rule, job)
    # the plugin probes the cluster while it sets up its options (scontrol show config,
    # which fails here and is ignored); nothing is submitted
    assert _submissions(calls) == [], calls.read_text()


def test_site_profile_layers_over_the_shipped_one(
    checkout: Path, no_cluster: tuple[dict[str, str], Path]
) -> None:
    """The test cluster's overlay sets partition, account and GPU partition; nothing else."""
    env, calls = no_cluster
    command = [str(SNAKEMAKE), "--profile", "slurm", "--profile", "tests/slurm/profile", "-n"]
    output = ok(_run(command, checkout, env))
    jobs = _resources(output)
    for rule in GPU_RULES | CPU_RULES:
        for job in jobs[rule]:
            expected = "gpu" if rule in GPU_RULES else "debug"
            assert job["slurm_partition"] == expected, (rule, job)
            assert job["slurm_account"] == "local", (rule, job)
    assert _submissions(calls) == [], calls.read_text()


def test_gres_requests_and_runtime_cap(
    checkout: Path, no_cluster: tuple[dict[str, str], Path]
) -> None:
    env, _ = no_cluster
    site = "slurm={gpu_request: gres, gpu_type: a100, max_runtime_min: 100}"
    command = [str(SNAKEMAKE), "--profile", "slurm", "-n", "--config", site]
    jobs = _resources(ok(_run(command, checkout, env)))
    for rule in GPU_RULES:
        for job in jobs[rule]:
            assert job["gres"] == "gpu:a100:1" and "gpu" not in job, (rule, job)
    for rule in CPU_RULES:
        assert all("gres" not in job and "gpu" not in job for job in jobs[rule]), rule
    assert {job["runtime"] for job in jobs["train_vae"]} == {"100"}  # 1440 in config.yaml
    assert {job["runtime"] for job in jobs["split_halves"]} == {"10"}


def test_python_m_finds_the_package_in_the_working_directory(checkout: Path) -> None:
    """What a conda environment without the package relies on (envs/dynamight.yaml)."""
    result = subprocess.run(
        [sys.executable, "-c", "import dynamight_core; print(dynamight_core.__file__)"],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(result.stdout.strip()).resolve().is_relative_to(checkout.resolve())


FAKE_PYTHON = """\
#!{python}
# Stands in for `python` in the rules' shell commands: makes the stages named in
# FAKE_FAILURES (stage=status, or stage=statusxN for the first N calls) fail, writing
# their --log as the real stages do.
import os, sys
stage = sys.argv[3] if sys.argv[1:3] == ["-m", "dynamight_core"] else None
log = sys.argv[sys.argv.index("--log") + 1] if "--log" in sys.argv else None
plan = dict(item.split("=") for item in os.environ["FAKE_FAILURES"].split(","))
if stage in plan:
    with open(os.environ["FAKE_CALLS"], "a") as calls:
        calls.write(stage + "\\n")
    with open(os.environ["FAKE_CALLS"]) as calls:
        count = calls.read().split().count(stage)
    status, _, times = plan[stage].partition("x")
    if not times or count <= int(times):
        message = f"fake failure of {{stage}}: exit status {{status}}"
        if log:
            with open(log, "w") as out:
                out.write(message + "\\n")
        else:
            print(message)
        sys.exit(int(status))
os.execv({python!r}, [{python!r}, *sys.argv[1:]])
"""


@pytest.mark.parametrize("stop_status", [2, 3], ids=["bad-input", "diverged"])
def test_retries_resume_grow_or_stop_on_bad_input(tmp_path: Path, stop_status: int) -> None:
    """The shipped profile's retries, run with the local executor.

    split_halves crashes once (exit 1): retried with twice the memory and time.
    reconstruct_consensus stops on bad input (exit 2), or its training diverges (exit 3):
    the stage runs once; the two retries ask for a few minutes without GPU and stop at once.
    Run again, the mark is gone and a crash (exit 1) is retried in full, with the same time
    each attempt (it resumes).
    """
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "python").write_text(FAKE_PYTHON.format(python=sys.executable))
    (fake / "python").chmod(0o755)
    workdir = make_workdir(tmp_path / "run")
    (workdir / "small.yaml").write_text("simulate: {n_particles: 200}\n")
    calls = tmp_path / "calls.txt"
    env = dict(
        os.environ,
        PATH=os.pathsep.join([str(fake), str(BIN), os.environ.get("PATH", "")]),
        FAKE_CALLS=str(calls),
    )
    env.pop("SNAKEMAKE_PROFILE", None)
    command = [
        str(SNAKEMAKE),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        "config.yaml",
        "ci.yaml",
        "small.yaml",
        "--profile",
        str(REPO / "slurm"),
        "--executor",
        "local",
        "--cores",
        "2",
        "--until",
        "reconstruct_consensus",
    ]
    log = workdir / "results/logs/reconstruct_consensus.log"
    mark = workdir / "results/.bad_input/reconstruct_consensus"

    env["FAKE_FAILURES"] = f"split-halves=1x1,reconstruct={stop_status}"
    first = _run(command, workdir, env)
    output = first.stdout + first.stderr
    assert first.returncode != 0, output[-3000:]
    jobs = _resources(output)
    split = jobs["split_halves"]
    assert [(job["mem_mb"], job["runtime"]) for job in split] == [("3000", "10"), ("6000", "20")]
    assert calls.read_text().split().count("reconstruct") == 1, output[-3000:]
    attempts = jobs["reconstruct_consensus"]
    assert [job["gpu"] for job in attempts] == ["1", "0", "0"], attempts
    assert [job["runtime"] for job in attempts] == ["120", "5", "5"], attempts
    assert [job["mem_mb"] for job in attempts] == ["3000", "1000", "1000"], attempts
    text = log.read_text()
    assert f"fake failure of reconstruct: exit status {stop_status}" in text
    assert text.count("not run again: the first attempt stopped on bad input") == 1
    assert mark.exists()

    env["FAKE_FAILURES"] = "reconstruct=1"
    second = _run(command, workdir, env)
    output = second.stdout + second.stderr
    assert second.returncode != 0, output[-3000:]
    assert calls.read_text().split().count("reconstruct") == 1 + 3, output[-3000:]
    attempts = _resources(output)["reconstruct_consensus"]
    assert [job["gpu"] for job in attempts] == ["1", "1", "1"], attempts
    assert [job["runtime"] for job in attempts] == ["120", "120", "120"], attempts
    assert [job["mem_mb"] for job in attempts] == ["3000", "6000", "9000"], attempts
    assert not mark.exists()
