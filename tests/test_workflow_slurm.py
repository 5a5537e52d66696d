"""The demo workflow through a real one-node SLURM cluster (started by tests/slurm/up.sh).

Jobs are submitted through the shipped profile `slurm/`, with the test cluster's site
overlay `tests/slurm/profile` layered after it, as a facility layers its own.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
from workflow_tools import CPU_RULES, GPU_RULES, REPO, make_workdir, ok, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# the training stages shortened (the demo's data and consensus stay as in ``local_run``,
# which the end of the test compares); the null control's jobs are the same rules as the
# real run's (local_run runs them)
SHORT_TRAINING = """\
gaussians: {iterations: 100}
warmup: {epochs: 1}
vae: {max_epochs: 1, refine_steps: 1, track_steps: 1}
deformed: {shards: 2}
report: {null_control: false}
"""


def _cannot_start(reason: str) -> None:
    """Skip with the reason on a developer machine; in CI the cluster must start."""
    message = f"SLURM test cluster not available: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    if os.geteuid() != 0:
        _cannot_start("starting slurmctld/slurmd and writing /etc/slurm needs root")
    try:
        started = subprocess.run(
            ["bash", str(REPO / "tests/slurm/up.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        _cannot_start(str(error))
    if started.returncode != 0:
        _cannot_start((started.stdout + started.stderr)[-2000:])
    yield
    subprocess.run(
        ["bash", str(REPO / "tests/slurm/down.sh")], capture_output=True, check=False, timeout=300
    )


SHIPPED_PROFILE = str(REPO / "slurm")
SITE_PROFILE = str(REPO / "tests/slurm/profile")


def _accounting(since: str) -> dict[str, list[dict[str, str]]]:
    """Rule -> its jobs (id, name, partition, AllocTRES, state), submitted since ``since``."""
    result = subprocess.run(
        [
            "sacct",
            "-X",
            "--parsable2",
            "--noheader",
            "-S",
            since,
            "--format=JobID,JobName,Partition,Comment,AllocTRES,State",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    jobs: dict[str, list[dict[str, str]]] = {}
    for line in result.stdout.splitlines():
        job_id, name, partition, comment, tres, state = line.split("|")
        if comment.startswith("rule_"):
            rule = comment.removeprefix("rule_").split("_wildcards_")[0]
            job = {"id": job_id, "name": name, "partition": partition, "tres": tres}
            jobs.setdefault(rule, []).append({**job, "state": state})
    return jobs


def _gpu_request(job_id: str) -> str:
    """How sbatch asked for GPUs: TresPerJob=gres:gpu:N (--gpus) or TresPerNode= (--gres)."""
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True
    ).stdout
    return " ".join(field for field in shown.split() if field.startswith("TresPer"))


def test_demo_through_slurm(slurm_cluster: None, local_run: Path, tmp_path: Path) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    workdir = make_workdir(tmp_path)
    (workdir / "short.yaml").write_text(SHORT_TRAINING)
    configfiles = ("config.yaml", "ci.yaml", "short.yaml")
    profiles = ("--profile", SHIPPED_PROFILE, "--profile", SITE_PROFILE)
    ok(snakemake(workdir, *profiles, configfiles=configfiles))

    jobs = _accounting(since)
    assert set(jobs) == GPU_RULES | CPU_RULES, jobs
    per_half = ("fit_consensus", "warmup", "train_vae", "solve_deformed", "latent_space")
    for rule in (*per_half, "explore_maps", "explore_movie"):
        assert len(jobs[rule]) == 2, rule  # one job per half set
    assert len(jobs["postprocess"]) == 2  # the consensus and the deformed half maps
    assert len(jobs["backproject_deformed"]) == 4  # two shards per half set, each a job
    for rule, rule_jobs in jobs.items():
        gpu = rule in GPU_RULES
        for job in rule_jobs:
            assert job["state"] == "COMPLETED", (rule, job)
            assert ("gres/gpu=1" in job["tres"]) == gpu, (rule, job["tres"])
            # sbatch --gpus=1 (the shipped slurm.gpu_request) for GPU rules, nothing for CPU
            assert _gpu_request(job["id"]) == ("TresPerJob=gres:gpu:1" if gpu else ""), rule
            # the site's GPU partition (slurm.gpu_partition in the overlay) for GPU rules
            assert job["partition"] == ("gpu" if gpu else "debug"), (rule, job)
            assert job["name"].startswith("dynamight_"), job  # slurm-jobname-prefix
    last_job = max(int(job["id"]) for rule_jobs in jobs.values() for job in rule_jobs)

    # a site whose SLURM takes --gres=gpu:N only (select/cons_res): one GPU stage again
    gres = "slurm={gpu_request: gres, gpu_partition: gpu}"  # replaces the overlay's config
    ok(
        snakemake(
            workdir,
            *profiles,
            "--config",
            gres,
            "--forcerun",
            "deformation_error",
            configfiles=configfiles,
        )
    )
    rerun = [job for job in _accounting(since)["deformation_error"] if int(job["id"]) > last_job]
    assert len(rerun) == 1, rerun
    assert rerun[0]["state"] == "COMPLETED" and "gres/gpu=1" in rerun[0]["tres"], rerun
    assert _gpu_request(rerun[0]["id"]) == "TresPerNode=gres:gpu:1", rerun
    assert rerun[0]["partition"] == "gpu", rerun

    assert (workdir / "results/vae/deformation_error.json").exists()
    # the consensus stages ran with the same configuration as ``local_run``: the same data,
    # the same report numbers; maps and curves agree to float32 rounding (multi-threaded CPU
    # arithmetic may differ in the last bit between two processes)
    results, reference = workdir / "results", local_run / "results"
    for name in ("simulated/particles.mrcs", "halves.csv", "consensus/fsc.json"):
        assert (results / name).read_bytes() == (reference / name).read_bytes(), name
    np.testing.assert_allclose(
        pd.read_csv(results / "consensus/fsc.tsv", sep="\t").to_numpy(float),
        pd.read_csv(reference / "consensus/fsc.tsv", sep="\t").to_numpy(float),
        rtol=1e-4,
        atol=1e-5,
    )
    for name in ("half1", "half2", "full"):
        ours = mrcfile.read(results / f"consensus/{name}.mrc")
        theirs = mrcfile.read(reference / f"consensus/{name}.mrc")
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * float(np.abs(theirs).max()))
