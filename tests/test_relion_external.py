"""The workflow as a RELION-5 External job: `relion-external` and relion/dynamight_external.

Each test makes a small RELION project folder (the simulated particles' stack under
Extract/, their STAR file under Refine3D/ with RELION's project-relative image names) and
runs the wrapper from it as RELION does. Snakemake is replaced through DYNAMIGHT_SNAKEMAKE
by a fake that records what it was given and writes some outputs (or fails, or waits to
be aborted); the last test runs the real snakemake with --dry-run on the real Snakefile.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import starfile
import yaml
from star_tools import relion_project

from dynamight_core.io.relion_pipeline import (
    ABORT_NOW,
    EXIT_ABORTED,
    EXIT_FAILURE,
    EXIT_SUCCESS,
    OUTPUT_NODES_FILE,
    WORKFLOW_OUTPUT_NODES,
    clear_exit_marks,
    existing_output_nodes,
    mark_aborted,
    mark_exit,
    write_output_nodes,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "relion" / "dynamight_external"
JOB = "External/job007"
STAR = "Refine3D/job010/run_data.star"
# what the fake snakemake writes into output_dir, and the node labels RELION must get
FAKE_OUTPUTS = {
    "deformed/half1.mrc": "DensityMap.mrc.halfmap",
    "deformed/half2.mrc": "DensityMap.mrc.halfmap",
    "deformed/full.mrc": "DensityMap.mrc",
    "postprocess/mask.mrc": "Mask3D.mrc",
    "explore/half1/pseudo_atoms.cif": "AtomCoords.cif",
}
FAKE_SNAKEMAKE = f"""
import json, os, signal, sys, time
from pathlib import Path

import yaml

args = sys.argv[1:]
config = yaml.safe_load(Path(args[args.index("--configfile") + 1]).read_text())
record = Path(os.environ["FAKE_RECORD"])
record.write_text(
    json.dumps({{"argv": args, "cwd": os.getcwd(), "path": os.environ["PATH"], "config": config}})
)
mode = os.environ.get("FAKE_MODE", "succeed")
if mode == "fail":
    print("fake snakemake: a job failed", file=sys.stderr)
    sys.exit(1)
if mode == "hang":
    def stop(signum, frame):
        (record.parent / "interrupted").write_text(signal.Signals(signum).name)
        sys.exit(130)
    signal.signal(signal.SIGINT, stop)
    (record.parent / "started").touch()
    time.sleep(60)
    sys.exit(0)
out = Path(config["output_dir"])
for name in {sorted(FAKE_OUTPUTS)!r}:
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_text("made by the fake snakemake")
"""


@pytest.fixture
def project(small_dataset: Path, tmp_path: Path) -> Path:
    """A RELION project: Extract/job005/<stacks> and Refine3D/job010/run_data.star."""
    root = tmp_path / "project"
    relion_project(root, small_dataset, STAR, JOB)
    return root


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, str]:
    """Environment that replaces snakemake by the fake (its record: tmp_path/fake/record)."""
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "snakemake.py").write_text(FAKE_SNAKEMAKE)
    command = shlex.join([sys.executable, str(folder / "snakemake.py")])
    return {"DYNAMIGHT_SNAKEMAKE": command, "FAKE_RECORD": str(folder / "record")}


def _wrapper(
    project: Path, *args: str, env: dict[str, str], script: bool = False, popen: bool = False
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """Run the wrapper in ``project`` as RELION does (``script``: through relion/...)."""
    stage = [str(SCRIPT)] if script else [sys.executable, "-m", "dynamight_core", "relion-external"]
    command = [*stage, "--o", f"{JOB}/", "--in_parts", STAR, *args]
    environment = {**os.environ, **env}
    if popen:
        return subprocess.Popen(
            command,
            cwd=project,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return subprocess.run(
        command,
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _marks(job_dir: Path) -> set[str]:
    return {path.name for path in job_dir.glob("RELION_JOB_*")}


def _record(fake: dict[str, str]) -> dict:
    return json.loads(Path(fake["FAKE_RECORD"]).read_text())


def test_success_writes_output_nodes_and_passes_the_settings(
    project: Path, fake: dict[str, str]
) -> None:
    result = _wrapper(
        project, "--vae.max_epochs", "3", "--j", "2", "--pipeline_control", f"{JOB}/", env=fake
    )
    assert result.returncode == 0, result.stdout + result.stderr
    job_dir = project / JOB
    assert _marks(job_dir) == {EXIT_SUCCESS}
    assert (job_dir / EXIT_SUCCESS).stat().st_size == 0

    nodes = starfile.read(job_dir / OUTPUT_NODES_FILE)
    assert list(nodes.columns) == ["rlnPipeLineNodeName", "rlnPipeLineNodeTypeLabel"]
    listed = dict(zip(nodes["rlnPipeLineNodeName"], nodes["rlnPipeLineNodeTypeLabel"], strict=True))
    assert listed == {f"{JOB}/{name}": label for name, label in FAKE_OUTPUTS.items()}
    for name in listed:
        assert (project / name).is_file(), f"{name} is not relative to the project folder"

    # snakemake ran in the repository root with the job's configuration file
    record = _record(fake)
    assert Path(record["cwd"]) == REPO
    argv = record["argv"]
    assert argv[argv.index("--cores") + 1] == "2"
    assert "--rerun-incomplete" in argv and "--profile" not in argv
    assert Path(argv[argv.index("--configfile") + 1]) == project / JOB / "dynamight_config.yaml"
    assert record["path"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    config = record["config"]
    assert config["vae"]["max_epochs"] == 3
    assert config["output_dir"] == str(project / JOB)
    assert config["inputs"]["particles"] == str(project / STAR)
    assert config["inputs"]["project_root"] == str(project)
    # the shipped config.yaml runs the demo: its simulated truth and demo values are undone
    assert config["inputs"]["reference_map"] is None
    assert config["inputs"]["reference_state"] is None
    assert config["inputs"]["mask"] is None
    assert config["gaussians"]["n_residues"] is None
    assert "vae.max_epochs: 3" in (project / JOB / "dynamight_config.yaml").read_text()


def test_inputs_config_file_and_profile(project: Path, fake: dict[str, str]) -> None:
    for name in ("Refine3D/job010/run_class001.mrc", "MaskCreate/job011/mask.mrc", "model.cif"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("")
    (project / "settings.yaml").write_text(
        "vae:\n  max_epochs: 7\n  latent_dim: 4\ninputs:\n  atomic_model: model.cif\n"
    )
    result = _wrapper(
        project,
        "--in_3dref",
        "Refine3D/job010/run_class001.mrc",
        "--in_mask",
        "MaskCreate/job011/mask.mrc",
        "--config_file",
        "settings.yaml",
        "--vae.max_epochs",
        "5",
        "--report.null_control",
        "false",
        "--profile",
        "slurm",
        "--j",
        "1",
        env=fake,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = _record(fake)
    config = record["config"]
    assert config["inputs"]["reference_map"] == str(project / "Refine3D/job010/run_class001.mrc")
    assert config["inputs"]["mask"] == str(project / "MaskCreate/job011/mask.mrc")
    assert config["inputs"]["atomic_model"] == str(project / "model.cif")
    assert config["vae"]["max_epochs"] == 5  # the Params tab wins over --config_file
    assert config["vae"]["latent_dim"] == 4
    assert config["report"]["null_control"] is False
    argv = record["argv"]
    assert argv[argv.index("--profile") + 1] == "slurm"  # found in the repository root


def test_failure_is_marked_and_a_stale_success_removed(project: Path, fake: dict[str, str]) -> None:
    job_dir = project / JOB
    (job_dir / EXIT_SUCCESS).touch()  # left by an earlier attempt ("Continue")
    write_output_nodes(job_dir, [(f"{JOB}/deformed/full.mrc", "DensityMap.mrc")])
    result = _wrapper(project, env={**fake, "FAKE_MODE": "fail"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert _marks(job_dir) == {EXIT_FAILURE}
    assert not (job_dir / OUTPUT_NODES_FILE).exists()
    assert "fake snakemake: a job failed" in result.stderr
    assert "snakemake failed (exit status 1)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--vae.max_epochs", "-5"),
        ("--split.validation_fraction", "lots"),
        ("--deformed.method", "magic"),
        ("--j", "0"),
    ],
)
def test_bad_setting_fails_before_snakemake(
    project: Path, fake: dict[str, str], option: str, value: str
) -> None:
    result = _wrapper(project, option, value, env=fake)
    assert result.returncode == 2, result.stdout + result.stderr
    assert _marks(project / JOB) == {EXIT_FAILURE}
    assert not Path(fake["FAKE_RECORD"]).exists(), "snakemake ran"
    errors = [line for line in result.stderr.splitlines() if "bad input" in line]
    assert len(errors) == 1 and option.lstrip("-") in errors[0] and value in errors[0], (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_unknown_config_file_key_is_named(project: Path, fake: dict[str, str]) -> None:
    (project / "settings.yaml").write_text("vae:\n  max_epoch: 7\n")
    result = _wrapper(project, "--config_file", "settings.yaml", env=fake)
    assert result.returncode == 2
    assert _marks(project / JOB) == {EXIT_FAILURE}
    assert "vae.max_epoch: unknown key (did you mean 'vae.max_epochs'?)" in result.stderr
    assert not Path(fake["FAKE_RECORD"]).exists()


def test_script_marks_failure_when_the_options_are_refused(
    project: Path, fake: dict[str, str]
) -> None:
    """A misspelt Params label stops argparse before the stage: the script marks the job."""
    result = _wrapper(project, "--vae.max_epoch", "3", env=fake, script=True)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unrecognized arguments: --vae.max_epoch 3" in result.stderr
    assert _marks(project / JOB) == {EXIT_FAILURE}
    assert not Path(fake["FAKE_RECORD"]).exists()


def test_script_runs_the_stage(project: Path, fake: dict[str, str]) -> None:
    result = _wrapper(project, "--vae.max_epochs", "3", env=fake, script=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _marks(project / JOB) == {EXIT_SUCCESS}
    assert _record(fake)["config"]["vae"]["max_epochs"] == 3


def test_relion_abort_stops_snakemake(project: Path, fake: dict[str, str]) -> None:
    """RELION's Abort: snakemake gets Ctrl-C (SIGINT), the job ends as aborted.

    Run through the script, which starts Python as a background job (SIGINT ignored):
    snakemake must still receive SIGINT.
    """
    process = _wrapper(project, env={**fake, "FAKE_MODE": "hang"}, script=True, popen=True)
    started = Path(fake["FAKE_RECORD"]).parent / "started"
    deadline = time.monotonic() + 60
    while not started.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the fake snakemake did not start"
        time.sleep(0.05)
    job_dir = project / JOB
    (job_dir / ABORT_NOW).touch()
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1, output
    assert (started.parent / "interrupted").read_text() == "SIGINT"
    assert _marks(job_dir) == {EXIT_ABORTED}
    assert "abort" in output


def test_dry_run_of_the_real_workflow(project: Path) -> None:
    """The generated configuration and command line are accepted by the Snakefile."""
    from workflow_tools import planned_jobs

    dry_run = shlex.join([sys.executable, "-m", "snakemake", "--dry-run"])
    result = _wrapper(
        project, "--vae.max_epochs", "3", "--j", "2", env={"DYNAMIGHT_SNAKEMAKE": dry_run}
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    jobs = planned_jobs(output)
    assert jobs.get("train_vae") == 2 and "solve_deformed" in jobs, output[-4000:]
    assert "simulate" not in jobs  # the demo's simulated truth is not asked for
    assert str(project / JOB / "consensus" / "half1.mrc") in output
    assert _marks(project / JOB) == {EXIT_SUCCESS}
    assert starfile.read(project / JOB / OUTPUT_NODES_FILE).empty  # nothing made yet
    config = yaml.safe_load((project / JOB / "dynamight_config.yaml").read_text())
    assert config["vae"]["max_epochs"] == 3


# --- the pipeline files, in-process --------------------------------------------------


def test_output_nodes_file_format(tmp_path: Path) -> None:
    write_output_nodes(tmp_path, [("External/job012/deformed/half1.mrc", "DensityMap.mrc.halfmap")])
    assert (tmp_path / OUTPUT_NODES_FILE).read_text() == (
        "# version 50001\n\ndata_output_nodes\n\nloop_\n_rlnPipeLineNodeName #1\n"
        "_rlnPipeLineNodeTypeLabel #2\n"
        "External/job012/deformed/half1.mrc DensityMap.mrc.halfmap\n\n"
    )
    assert not list(tmp_path.glob(".*.tmp"))


def test_output_nodes_table_and_marks(tmp_path: Path) -> None:
    labels = dict(WORKFLOW_OUTPUT_NODES)
    assert labels["deformed/half1.mrc"] == "DensityMap.mrc.halfmap"
    assert labels["postprocess/deformed/sharpened.mrc"] == "DensityMap.mrc"
    assert labels["local_resolution/deformed.mrc"] == "Image3D.mrc.localresmap"
    assert labels["explore/half2/pseudo_atoms.cif"] == "AtomCoords.cif"
    (tmp_path / "consensus").mkdir()
    (tmp_path / "consensus" / "half2.mrc").write_text("")
    assert existing_output_nodes(tmp_path, "External/job001") == [
        ("External/job001/consensus/half2.mrc", "DensityMap.mrc.halfmap")
    ]
    mark_exit(tmp_path, success=False)
    mark_exit(tmp_path, success=True)
    assert _marks(tmp_path) == {EXIT_SUCCESS}
    (tmp_path / ABORT_NOW).touch()
    mark_aborted(tmp_path)
    assert _marks(tmp_path) == {EXIT_ABORTED}
    assert clear_exit_marks(tmp_path) == [EXIT_ABORTED]
    assert _marks(tmp_path) == set()
