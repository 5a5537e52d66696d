"""The Snakemake workflow: lint, formatting, validation, a full local run and caching."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from workflow_tools import BIN, REPO, make_workdir, ok, planned_jobs, snakemake

from dynamight_core.config import describe

pytestmark = pytest.mark.slow

ALL_RULES = {
    "simulate",
    "split_halves",
    "reconstruct_consensus",
    "fsc_consensus",
    "fit_consensus",
    "warmup",
    "store_particles",
    "train_vae",
    "deformation_error",
    "backproject_deformed",
    "solve_deformed",
    "fsc_deformed",
    "align_halves",
    "make_mask",
    "postprocess",
    "local_resolution",
    "latent_space",
    "explore_maps",
    "explore_movie",
    "provenance",
    "report",
    "all",
}
# what follows any change of a map: its post-processing, local resolution, the report
VALIDATION = {"postprocess", "local_resolution", "provenance", "report"}
DEFORMED = {"backproject_deformed", "solve_deformed", "fsc_deformed"} | VALIDATION
EXPLORE = {"explore_maps", "explore_movie"}
TRAINING = {"train_vae", "deformation_error", "latent_space", "align_halves"} | EXPLORE | DEFORMED


def test_lint_is_clean() -> None:
    output = ok(snakemake(REPO, "--lint", configfiles=()))
    assert "Lints for" not in output


def test_snakefmt_is_clean() -> None:
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_dry_run_plans_every_stage(tmp_path: Path) -> None:
    output = ok(snakemake(make_workdir(tmp_path), "--dry-run"))
    assert set(planned_jobs(output)) == ALL_RULES


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("reconstruct={pda: 2}", "reconstruct.pda: unknown key (did you mean 'reconstruct.pad'?)"),
        ("reconstruct={batch_size: sixty}", "reconstruct.batch_size: expected an integer"),
        ("reconstruct={pad: 9}", "reconstruct.pad: expected a value <= 4, found 9"),
        (
            "inputs={particles: missing.star}",
            "inputs.particles: file 'missing.star' does not exist",
        ),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path: Path, override: str, message: str) -> None:
    workdir = make_workdir(tmp_path)
    result = snakemake(workdir, "--cores", "1", "--config", override)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (workdir / "results").exists(), "a job ran despite the bad configuration"


def test_demo_writes_report_and_provenance(local_run: Path) -> None:
    summary = json.loads((local_run / "results/consensus/fsc.json").read_text())
    assert 2 * 1.8 <= summary["resolution_0143_a"] < 30.0  # Nyquist of the demo's 1.8 Å
    provenance = json.loads((local_run / "results/provenance.json").read_text())
    for key in ("config", "inputs_sha256", "packages", "code", "seeds", "host", "stages"):
        assert key in provenance, key
    seed_keys = {key for key, _ in describe() if key.endswith("seed")}  # report.null_seed too
    assert set(provenance["seeds"]) == seed_keys and len(seed_keys) >= 4
    assert any(path.endswith("particles.mrcs") for path in provenance["inputs_sha256"])
    assert provenance["stages"]["reconstruct_consensus"]["device"]["device"] == "cpu"
    assert provenance["packages"]["torch"]


def test_html_report_builds(local_run: Path) -> None:
    ok(snakemake(local_run, "--report", "report.html"))
    text = (local_run / "report.html").read_text()
    assert len(text) > 10_000
    assert "Validation report" in text  # the validation report's category


def test_second_run_does_nothing(local_run: Path) -> None:
    output = ok(snakemake(local_run, "--cores", "2"))
    assert "Nothing to be done" in output


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("vae={kl_weight: 0.02}", TRAINING),
        ("deformed={tau2_fudge: 2.0}", {"solve_deformed", "fsc_deformed"} | VALIDATION),
        ("local_resolution={step_px: 2}", {"local_resolution", "provenance", "report"}),
        ("report={significance_z: 2.0}", {"provenance", "report"}),
        ("explore={movie_frames: 12}", {"explore_movie", "provenance", "report"}),
        ("explore={bfactor: disagreement}", {"explore_maps", "provenance", "report"}),
        ("warmup={epochs: 7}", {"warmup"} | TRAINING),
        ("gaussians={iterations: 500}", {"fit_consensus", "warmup"} | TRAINING),
        (
            "reconstruct={tau2_fudge: 2.0}",
            {"reconstruct_consensus", "fsc_consensus", "make_mask", "fit_consensus", "warmup"}
            | TRAINING,
        ),
        ("split={seed: 7}", ALL_RULES - {"all", "simulate"}),
        ("simulate={snr: 0.05}", ALL_RULES - {"all"}),
    ],
)
def test_parameter_change_reruns_stage_and_descendants(
    local_run: Path, override: str, expected: set[str]
) -> None:
    output = ok(snakemake(local_run, "--dry-run", "--config", override))
    assert set(planned_jobs(output)) - {"all"} == expected


def test_touching_unrelated_files_does_nothing(local_run: Path) -> None:
    (local_run / "notes.txt").write_text("unrelated")
    (local_run / "results" / "README.md").touch()
    output = ok(snakemake(local_run, "--dry-run"))
    assert "Nothing to be done" in output


def test_failed_job_keeps_a_log_that_says_what_to_do(local_run: Path, tmp_path: Path) -> None:
    """A STAR file without rlnAngleTilt passes config validation but fails in its job."""
    workdir = make_workdir(tmp_path)
    data = workdir / "data"
    shutil.copytree(local_run / "results" / "simulated", data)
    star = data / "particles.star"
    star.write_text(star.read_text().replace("_rlnAngleTilt", "_rlnAngleTiltX"))
    overrides = f"inputs={{particles: {star}, mask: null, reference_map: null}}"
    result = snakemake(workdir, "--cores", "1", "--config", overrides)
    assert result.returncode != 0
    log = workdir / "results/logs/split_halves.log"
    assert str(log.relative_to(workdir)) in result.stdout + result.stderr
    text = log.read_text()
    assert "bad input" in text and "rlnAngleTilt" in text and "expected a column" in text
    assert not (workdir / "results/halves.csv").exists()


def test_a_changed_stack_reruns_the_stages_that_read_it(
    small_dataset: Path, tmp_path: Path
) -> None:
    """A new .mrcs behind an unchanged STAR file re-runs the split (and what follows)."""
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    workdir = make_workdir(tmp_path / "run")
    (workdir / "real.yaml").write_text(
        f"inputs: {{particles: {data / 'particles.star'}, mask: null, reference_map: null}}\n"
    )
    configfiles = ("config.yaml", "ci.yaml", "real.yaml")
    target = "results/halves.csv"
    ok(snakemake(workdir, "--cores", "1", target, configfiles=configfiles))
    unchanged = ok(snakemake(workdir, "--dry-run", target, configfiles=configfiles))
    assert "split_halves" not in planned_jobs(unchanged)
    stack = data / "particles.mrcs"
    later = (workdir / target).stat().st_mtime + 10
    os.utime(stack, (later, later))
    changed = ok(snakemake(workdir, "--dry-run", target, configfiles=configfiles))
    assert planned_jobs(changed) == {"split_halves": 1}
    assert str(stack.resolve()) in changed
