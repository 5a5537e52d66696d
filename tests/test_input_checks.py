"""What reaches us from outside: real pixel sizes, impossible optics, duplicates, NaN.

Each test here stands for a defect a user met on data we did not make: a float32 pixel
size compared exactly, optics values that produced all-NaN maps with exit code 0, repeated
images landing in both half sets, NaN written into JSON, private output files, a changed
stack that did not re-run its readers.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from star_tools import copy_dataset, edit_star

from dynamight_core.config import ConfigError, validate
from dynamight_core.data.halves import assign_halves
from dynamight_core.errors import InputError, NonFiniteResultError
from dynamight_core.io.files import write_json_atomic, write_text_atomic
from dynamight_core.io.mrc import read_volume, write_volume
from dynamight_core.io.star import read_particles
from dynamight_core.io.star_stacks import existing_stacks, stack_names
from dynamight_core.metrics.fsc import FscCurve
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.stages.common import check_model_matches_particles


def _model(box_px: int, pixel_size_a: float) -> GaussianModel:
    widths_a = torch.tensor([2.0, 3.0]) * pixel_size_a
    return GaussianModel(torch.zeros(4, 3), torch.ones(4), widths_a, box_px, pixel_size_a)


# ---- real pixel sizes ------------------------------------------------------------------


@pytest.mark.parametrize("pixel_size_a", [1.06, 0.83, 1.8])
def test_pixel_size_from_a_float32_header_matches_the_star(
    small_dataset: Path, tmp_path: Path, pixel_size_a: float
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"
    edit_star(star, lambda b: b["optics"].__setitem__("rlnImagePixelSize", pixel_size_a))
    particles = read_particles(star)
    write_volume(tmp_path / "map.mrc", np.zeros((64, 64, 64), np.float32), pixel_size_a)
    from_header = read_volume(tmp_path / "map.mrc").voxel_size_a
    assert from_header != pixel_size_a  # float32 cannot hold it: the case users meet
    check_model_matches_particles("model.pt", _model(64, from_header), particles)


def test_a_model_at_another_pixel_size_is_refused(small_dataset: Path) -> None:
    particles = read_particles(small_dataset / "particles.star")
    for model in (_model(64, particles.pixel_size_a * 1.01), _model(32, particles.pixel_size_a)):
        with pytest.raises(InputError, match=r"model\.pt: box and pixel size"):
            check_model_matches_particles("model.pt", model, particles)


# ---- impossible optics and CTF values --------------------------------------------------


@pytest.mark.parametrize(
    ("block", "column", "value"),
    [
        ("optics", "rlnImagePixelSize", 0.0),
        ("optics", "rlnImagePixelSize", -1.8),
        ("optics", "rlnVoltage", 0.0),
        ("optics", "rlnAmplitudeContrast", 1.5),
        ("optics", "rlnAmplitudeContrast", -0.1),
        ("particles", "rlnDefocusU", -15000.0),
        ("particles", "rlnDefocusV", 0.0),
        ("particles", "rlnCtfScalefactor", 0.0),
    ],
)
def test_impossible_optics_are_refused_before_compute(
    small_dataset: Path, tmp_path: Path, block: str, column: str, value: float
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"

    def edit(blocks: dict) -> None:
        blocks[block].loc[0, column] = value

    edit_star(star, edit)
    with pytest.raises(InputError) as error:
        read_particles(star)
    message = str(error.value)
    assert f"{column} (data_{block}) row 1" in message and repr(value) in message


def test_legacy_star_with_impossible_pixel_size_is_refused(
    small_dataset: Path, tmp_path: Path
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    blocks = starfile.read(data / "particles.star", always_dict=True)
    optics, particles = blocks["optics"], blocks["particles"]
    for column in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        particles[column] = optics[column].iloc[0]
    particles["rlnDetectorPixelSize"] = -5.0
    particles["rlnMagnification"] = 10000.0
    legacy = data / "legacy.star"
    starfile.write({"": particles.drop(columns=["rlnOpticsGroup"])}, legacy, overwrite=True)
    with pytest.raises(InputError, match="rlnImagePixelSize"):
        read_particles(legacy)


def test_ignored_ctf_refinements_are_named(
    small_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"

    def edit(blocks: dict) -> None:
        blocks["optics"]["rlnBeamTiltX"] = 0.3
        blocks["optics"]["rlnMagMat00"] = 1.0  # identity: nothing to warn about
        blocks["optics"]["rlnOddZernike"] = "[0.1,0.2]"

    edit_star(star, edit)
    with caplog.at_level(logging.WARNING):
        read_particles(star)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "rlnBeamTiltX (data_optics)" in warning and "rlnOddZernike" in warning
    assert "rlnMagMat00" not in warning


# ---- half-set integrity ----------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["same", "zero-padded"])
def test_repeated_images_are_refused(small_dataset: Path, tmp_path: Path, spelling: str) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"

    def edit(blocks: dict) -> None:
        table = blocks["particles"]
        number, _, name = table.loc[3, "rlnImageName"].partition("@")
        copy = number if spelling == "same" else f"{int(number):06d}"
        table.loc[10, "rlnImageName"] = f"{copy}@{name}"

    edit_star(star, edit)
    with pytest.raises(InputError) as error:
        read_particles(star)
    assert "row 4" in str(error.value) and "row 11" in str(error.value)


def test_missing_random_subset_warns_that_halves_may_not_be_independent(
    small_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"
    edit_star(star, lambda b: b["particles"].drop(columns=["rlnRandomSubset"], inplace=True))
    particles = read_particles(star)
    with caplog.at_level(logging.WARNING):
        halves = assign_halves(particles, seed=0)
    assert sorted(np.bincount(halves)[1:]) == [100, 100]
    assert any(
        "no rlnRandomSubset" in r.getMessage() and "inflated" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING
    )


# ---- the configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"vae": {"lr": float("nan")}}, "vae.lr: expected a finite number"),
        ({"vae": {"kl_weight": "inf"}}, "vae.kl_weight: expected a finite number"),
        ({"reconstruct": {"tau2_fudge": float("inf")}}, "reconstruct.tau2_fudge"),
        ({"split": {"validation_fraction": 0}}, "split.validation_fraction: expected a value > 0"),
        ({"inputs": {"project_root": "no/such/project"}}, "inputs.project_root"),
    ],
)
def test_config_values_that_make_nan_or_nothing_are_refused(
    values: dict, fragment: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as error:
        validate(values, base=tmp_path)
    assert fragment in str(error.value)


def test_a_missing_project_root_is_refused_by_the_reader(small_dataset: Path) -> None:
    with pytest.raises(InputError, match="project root"):
        read_particles(small_dataset / "particles.star", small_dataset / "no-such-project")


# ---- nothing silently wrong ------------------------------------------------------------


def test_json_never_holds_nan_or_infinity(tmp_path: Path) -> None:
    record = {"a": math.nan, "b": [1.0, math.inf, np.float32("nan")], "c": {"d": -math.inf}}
    write_json_atomic(tmp_path / "x.json", record)
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None, None], "c": {"d": None}}


def test_all_nan_fsc_has_no_resolution() -> None:
    curve = FscCurve(np.full(33, np.nan), np.ones(33, dtype=np.int64), 64, 1.8)
    assert math.isnan(curve.resolution_at(0.143))
    real = FscCurve(np.linspace(1.0, 0.0, 33), np.ones(33, dtype=np.int64), 64, 1.8)
    assert 2 * 1.8 < real.resolution_at(0.143) < 64 * 1.8


def test_a_nan_map_is_not_written(tmp_path: Path) -> None:
    volume = np.zeros((16, 16, 16), np.float32)
    volume[3, 4, 5] = np.nan
    with pytest.raises(NonFiniteResultError, match="1 NaN or infinite"):
        write_volume(tmp_path / "map.mrc", volume, 1.8)
    assert not (tmp_path / "map.mrc").exists()


# ---- outputs -----------------------------------------------------------------------------


def test_outputs_are_readable_by_the_group(tmp_path: Path) -> None:
    previous = os.umask(0o002)
    try:
        write_text_atomic(tmp_path / "out.txt", "x")
        write_volume(tmp_path / "map.mrc", np.zeros((8, 8, 8), np.float32), 1.8)
    finally:
        os.umask(previous)
    for name in ("out.txt", "map.mrc"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o664


def test_stack_names_are_found_without_the_star_parser(small_dataset: Path) -> None:
    star = small_dataset / "particles.star"
    table = starfile.read(star)["particles"]
    expected = list(dict.fromkeys(n.partition("@")[2] for n in table["rlnImageName"]))
    assert stack_names(star) == expected
    assert existing_stacks(star, None) == [str((small_dataset / expected[0]).resolve())]


def test_optics_groups_agreeing_within_float_precision_are_one_pixel_size(
    small_dataset: Path, tmp_path: Path
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"

    def two_groups(blocks: dict, second_pixel_a: float) -> None:
        optics = blocks["optics"]
        second = optics.iloc[[0]].copy()
        second["rlnOpticsGroup"] = 2
        second["rlnImagePixelSize"] = second_pixel_a
        first = optics.iloc[[0]].assign(rlnImagePixelSize=1.06)
        blocks["optics"] = pd.concat([first, second], ignore_index=True)
        blocks["particles"].loc[::2, "rlnOpticsGroup"] = 2

    edit_star(star, lambda b: two_groups(b, float(np.float32(1.06))))
    assert read_particles(star).pixel_size_a == pytest.approx(1.06, rel=1e-6)
    edit_star(star, lambda b: two_groups(b, 1.10))
    with pytest.raises(InputError, match="the same value in every optics group"):
        read_particles(star)
