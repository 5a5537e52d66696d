"""Odd but legal-looking input that used to pass without a word (issue 29, class 4).

A fractional optics group read as its integer part, a text magnification that ended in a
traceback, a stack whose header disagrees with the STAR file's pixel size, resource
requests without an upper bound, and a memory plan that forgot the memory the process
itself already holds.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import mrcfile
import pytest
import starfile
import torch
from star_tools import copy_dataset, edit_star

from dynamight_core.config import ConfigError, validate
from dynamight_core.config_site import MAX_MEM_MB, MAX_RUNTIME_MIN
from dynamight_core.errors import InputError, MemoryPlanError
from dynamight_core.io.stacks import validate_stacks
from dynamight_core.io.star import read_particles
from dynamight_core.memory import host_memory_bytes, resident_bytes
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.training.memory import estimate_warmup_step_bytes
from dynamight_core.training.memory_plan import plan_warmup_batch

# ---- integer columns -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "column", "value"),
    [
        ("optics", "rlnOpticsGroup", 1.7),
        ("particles", "rlnOpticsGroup", 1.7),
        ("optics", "rlnImageSize", 64.5),
        ("particles", "rlnRandomSubset", 1.5),
        ("particles", "rlnClassNumber", 2.25),
    ],
)
def test_a_fractional_integer_column_is_refused(
    small_dataset: Path, tmp_path: Path, block: str, column: str, value: float
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"

    def edit(blocks: dict) -> None:
        table = blocks[block]
        if column not in table.columns:
            table[column] = 1
        table[column] = table[column].astype(float)  # the other rows are written as 1.000
        table.loc[len(table) - 1, column] = value

    edit_star(star, edit)
    with pytest.raises(InputError) as error:
        read_particles(star)
    message = str(error.value)
    row = len(starfile.read(star, always_dict=True)[block])
    assert str(star) in message
    assert f"{column} (data_{block}) row {row}" in message
    assert "a whole number" in message and repr(value) in message


def test_whole_numbers_written_as_floats_are_accepted(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"

    def edit(blocks: dict) -> None:
        for table in blocks.values():
            table["rlnOpticsGroup"] = table["rlnOpticsGroup"].astype(float)

    edit_star(star, edit)
    assert "1.0" in star.read_text()
    assert len(read_particles(star)) == 200


@pytest.mark.parametrize("entry", ["000012.5@particles.mrcs", "1e1@particles.mrcs"])
def test_a_fractional_image_index_is_refused(
    small_dataset: Path, tmp_path: Path, entry: str
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"
    edit_star(star, lambda blocks: blocks["particles"].__setitem__("rlnImageName", entry))
    with pytest.raises(InputError, match=r"rlnImageName row 1: expected 'N@stack.mrcs'"):
        read_particles(star)


def test_a_zero_padded_image_index_is_read(small_dataset: Path) -> None:
    particles = read_particles(small_dataset / "particles.star")
    assert particles.image_names()[11].startswith("000012@")
    assert particles.slice_index[11] == 11


def _legacy_star(dataset: Path, tmp_path: Path, magnification: object) -> Path:
    """A RELION 3.0 copy of ``dataset``'s STAR file: optics on every particle row."""
    data = copy_dataset(dataset, tmp_path)
    blocks = starfile.read(data / "particles.star", always_dict=True)
    optics, particles = blocks["optics"], blocks["particles"]
    for column in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        particles[column] = optics[column].iloc[0]
    particles["rlnDetectorPixelSize"] = 2.0
    particles["rlnMagnification"] = 10000.0
    particles = particles.astype({"rlnMagnification": object})
    particles.loc[3, "rlnMagnification"] = magnification
    legacy = data / "legacy.star"
    starfile.write({"": particles.drop(columns=["rlnOpticsGroup"])}, legacy, overwrite=True)
    return legacy


def test_a_text_magnification_in_a_legacy_star_is_an_input_error(
    small_dataset: Path, tmp_path: Path
) -> None:
    legacy = _legacy_star(small_dataset, tmp_path, "abc")
    with pytest.raises(InputError) as error:
        read_particles(legacy)
    message = str(error.value)
    assert "rlnMagnification (data_particles) row 4" in message and "'abc'" in message


def test_a_legacy_star_with_numbers_gives_the_pixel_size(
    small_dataset: Path, tmp_path: Path
) -> None:
    legacy = _legacy_star(small_dataset, tmp_path, 10000.0)
    assert math.isclose(read_particles(legacy).pixel_size_a, 2.0)


# ---- the stacks' header pixel size -----------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    ("header_a", "warned"),
    [(4.0, True), (1.0, True), (0.0, False), (2.0 * (1 + 1e-5), False), (2.0, False)],
)
def test_a_stack_header_pixel_size_other_than_the_stars_is_named(
    small_dataset: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    header_a: float,
    warned: bool,
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    stack = data / "particles.mrcs"
    with mrcfile.open(stack, mode="r+") as mrc:
        mrc.voxel_size = header_a
    particles = read_particles(data / "particles.star")
    assert particles.pixel_size_a == pytest.approx(2.0)
    with caplog.at_level(logging.WARNING, logger="dynamight_core.io.stacks"):
        validate_stacks(particles, scan_values=False)
    warnings = _warnings(caplog)
    if not warned:
        assert warnings == []
        return
    assert len(warnings) == 1
    assert str(stack) in warnings[0]
    assert f"{header_a:.4f} Å" in warnings[0] and "2.0000 Å" in warnings[0]


# ---- resource requests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("mem_mb", 100_000_000_000, f"expected a value <= {MAX_MEM_MB}, found 100000000000"),
        ("mem_mb", 1e11, "expected an integer, found 100000000000.0"),
        ("mem_mb", "1e11", "expected an integer, found '1e11'"),
        ("runtime_min", 10**6, f"expected a value <= {MAX_RUNTIME_MIN}, found 1000000"),
        ("runtime_min", 90.5, "expected an integer, found 90.5"),
        ("cpus", 4096, "expected a value <= 256, found 4096"),
        ("gpu", 16, "expected a value <= 1, found 16"),
        ("gpu", 0.5, "expected an integer, found 0.5"),
    ],
)
def test_resource_requests_are_bounded_integers(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate({"resources": {"train_vae": {key: value}}}, check_files=False)
    assert f"resources.train_vae.{key}: {expected}" in str(error.value)


def test_the_largest_resource_requests_are_accepted() -> None:
    request = {"mem_mb": MAX_MEM_MB, "runtime_min": MAX_RUNTIME_MIN, "cpus": 256, "gpu": 1}
    merged = validate({"resources": {"train_vae": request}}, check_files=False)
    assert merged["resources"]["train_vae"] == request
    with pytest.raises(ConfigError, match=r"slurm\.max_runtime_min: expected a value <= 43200"):
        validate({"slurm": {"max_runtime_min": 10**7}}, check_files=False)


# ---- the memory plan counts the process's own memory -----------------------------------


def _small_model() -> GaussianModel:
    generator = torch.Generator().manual_seed(0)
    positions = (torch.rand(50, 3, generator=generator) - 0.5) * 40.0
    widths_a = torch.tensor([3.0, 5.0])
    return GaussianModel(positions, torch.ones(50), widths_a, 64, 2.0)


def test_the_slurm_grant_is_net_of_the_process_resident_memory(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemAvailable: {10**9} kB\n")
    absent = tmp_path / "no_cgroup"
    environ = {"SLURM_MEM_PER_NODE": "1000"}
    grant = 1000 * 1024**2

    def left(resident: int | None) -> int:
        return host_memory_bytes(meminfo, absent, absent, environ, resident)

    assert left(0) == grant  # what the plan compared a step with before
    assert left(300 * 1024**2) == 700 * 1024**2
    held = resident_bytes()
    assert 10 * 1024**2 < held < 64 * 1024**3  # torch alone is more than 10 MB
    assert left(None) <= grant - 0.5 * held


def test_a_grant_above_the_step_but_below_step_plus_baseline_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _small_model()
    step = estimate_warmup_step_bytes(1, 64, 50, 2).total_bytes
    baseline = resident_bytes()
    # the plan may use 80 % of what is left: this grant holds one step, not the process too
    grant_mb = math.ceil(step / 0.8 / 1024**2) + 1
    assert grant_mb * 1024**2 * 0.8 > step
    assert grant_mb * 1024**2 < step + baseline
    monkeypatch.delenv("SLURM_MEM_PER_CPU", raising=False)
    monkeypatch.setenv("SLURM_MEM_PER_NODE", str(grant_mb))
    with pytest.raises(MemoryPlanError, match=r"warmup\.batch_size: warmup step"):
        plan_warmup_batch(model, 1, torch.device("cpu"))
    monkeypatch.setenv("SLURM_MEM_PER_NODE", str(grant_mb + math.ceil(baseline / 0.8 / 1024**2)))
    assert plan_warmup_batch(model, 1, torch.device("cpu")) == 1
