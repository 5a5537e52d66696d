"""Installation: the torch build `make install` picks, and the conda environment for clusters."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _fake_nvidia_smi(folder: Path, driver: str, caps: list[str]) -> None:
    """An nvidia-smi that answers the two queries envs/torch-build.sh makes."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        f"  *driver_version*) printf '%s\\n' {' '.join([driver] * len(caps))} ;;\n"
        f"  *compute_cap*) printf '%s\\n' {' '.join(caps)} ;;\n"
        "  *) exit 9 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)


def _torch_build(path: str) -> str:
    result = subprocess.run(
        ["bash", str(REPO / "envs/torch-build.sh")],
        env={"PATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr.startswith("torch build: "), result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(
    ("driver", "caps", "build"),
    [
        ("470.256.02", ["7.0"], "cpu"),  # too old for any CUDA 12 build
        ("525.60.13", ["7.0"], "cu126"),  # V100: only cu126 has sm_70
        ("590.44.01", ["6.0", "8.0"], "cu126"),  # a P100 among the GPUs
        ("535.104.05", ["8.0"], "cu126"),  # A100 on a CUDA 12 driver
        ("580.65.06", ["9.0"], "cu130"),  # H100 on a CUDA 13 driver
        ("570.124.06", ["12.0"], "cu129"),  # Blackwell on a CUDA 12.8 driver
        ("590.44.01", ["12.0"], "cu130"),
    ],
)
def test_torch_build_follows_driver_and_gpus(
    tmp_path: Path, driver: str, caps: list[str], build: str
) -> None:
    _fake_nvidia_smi(tmp_path / "bin", driver, caps)
    assert _torch_build(f"{tmp_path / 'bin'}:/usr/bin:/bin") == build


def test_torch_build_is_cpu_without_nvidia_smi() -> None:
    assert _torch_build("/usr/bin:/bin") == "cpu"


def _planned_install(*settings: str) -> str:
    """The commands `make` would run to install into a venv that does not exist."""
    result = subprocess.run(
        ["make", "-n", "-B", "/nonexistent/.installed", "VENV=/nonexistent", *settings],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("build", ["cu126", "cu129", "cu130", "cu132"])
def test_cuda_builds_come_from_their_pytorch_index(build: str) -> None:
    commands = _planned_install(f"TORCH_BUILD={build}")
    assert (
        f'pip install --quiet "torch==2.13.0+{build}" '
        f'--extra-index-url "https://download.pytorch.org/whl/{build}"'
    ) in commands


def test_cpu_build_is_plain_torch_with_the_cpu_index() -> None:
    """Plain torch==2.13.0: a local wheel, a mirror or PyPI can serve it, the CPU index first."""
    commands = _planned_install("TORCH_BUILD=cpu")
    assert (
        'pip install --quiet "torch==2.13.0" '
        '--extra-index-url "https://download.pytorch.org/whl/cpu"'
    ) in commands
    assert re.search(r"pip install .*-c envs/constraints.txt -e", commands)


def test_unknown_torch_build_is_refused(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", f"{venv}/.installed", f"VENV={venv}", "TORCH_BUILD=cu118"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "TORCH_BUILD=cu118: expected one of cpu cu126 cu129 cu130 cu132" in result.stderr
    assert not venv.exists()


def test_pinned_torch_is_the_one_make_installs() -> None:
    constraints = (REPO / "envs/constraints.txt").read_text()
    assert "torch==2.13.0" in constraints.split()
    assert "TORCH_VERSION := 2.13.0" in (REPO / "Makefile").read_text()


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_conda_environment_is_conda_forge_only_and_complete() -> None:
    env = yaml.safe_load((REPO / "envs/dynamight.yaml").read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda = [dep for dep in env["dependencies"] if isinstance(dep, str)]
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    for requirement in conda + pip:
        # no editable or path installs: under --sdm conda the file is read from elsewhere
        assert not requirement.startswith(("-", ".", "/")), requirement
        assert not re.search(r"\.\./|file:|git\+", requirement), requirement
        assert "::" not in requirement, requirement  # no package from another channel
    # a CUDA build of pytorch with a CUDA version pinned (the driver it needs: README)
    assert "pytorch[version='>=2.3', build='cuda*']" in conda
    assert any(re.fullmatch(r"cuda-version=1[23]\.\*", dep) for dep in conda)
    # every runtime dependency of the package and of the workflow is there
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {_name(dep) for dep in project["dependencies"]}
    needed |= {_name(dep) for dep in project["optional-dependencies"]["workflow"]}
    present = {_name(dep) for dep in conda + pip}
    present = {"torch" if name == "pytorch" else name for name in present}
    assert needed <= present, needed - present
