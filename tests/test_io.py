"""STAR and MRC input: formats, path resolution, lazy reading and every bad-input error."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from star_tools import copy_dataset, edit_star

from dynamight_core.cli import main
from dynamight_core.errors import InputError
from dynamight_core.io.mrc import Volume, check_volume_matches, read_volume, write_volume
from dynamight_core.io.stacks import ImageSource, validate_stacks
from dynamight_core.io.star import read_particles


def _expect(error: pytest.ExceptionInfo[InputError], *fragments: str) -> None:
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_reads_relion31_star(small_dataset: Path) -> None:
    particles = read_particles(small_dataset / "particles.star")
    table = starfile.read(small_dataset / "particles.star")["particles"]
    assert len(particles) == len(table) == 200
    assert particles.box_px == 64 and particles.pixel_size_a == 2.0
    np.testing.assert_allclose(particles.euler_deg[:, 1], table["rlnAngleTilt"])
    np.testing.assert_allclose(particles.origin_a[:, 0], table["rlnOriginXAngst"])
    np.testing.assert_allclose(particles.voltage_kv, 300.0)
    assert set(particles.random_subset.tolist()) == {1, 2}


def test_reads_legacy_relion30_star(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    blocks = starfile.read(data / "particles.star", always_dict=True)
    legacy = blocks["particles"].drop(
        columns=["rlnOpticsGroup", "rlnOriginXAngst", "rlnOriginYAngst"]
    )
    legacy["rlnOriginX"] = blocks["particles"]["rlnOriginXAngst"] / 2.0
    legacy["rlnOriginY"] = blocks["particles"]["rlnOriginYAngst"] / 2.0
    legacy["rlnVoltage"] = 300.0
    legacy["rlnSphericalAberration"] = 2.7
    legacy["rlnAmplitudeContrast"] = 0.1
    legacy["rlnDetectorPixelSize"] = 5.0
    legacy["rlnMagnification"] = 25000.0
    starfile.write(legacy, data / "legacy.star", overwrite=True)
    modern = read_particles(data / "particles.star")
    old = read_particles(data / "legacy.star")
    validate_stacks(old)
    assert old.pixel_size_a == pytest.approx(2.0) and old.box_px == 64
    # starfile writes six decimals, hence the tolerance
    np.testing.assert_allclose(old.origin_a, modern.origin_a, atol=1e-5)
    np.testing.assert_allclose(old.euler_deg, modern.euler_deg, atol=1e-5)


def test_image_paths_resolve_against_project_root(small_dataset: Path, tmp_path: Path) -> None:
    project = copy_dataset(small_dataset, tmp_path)
    elsewhere = tmp_path / "jobs" / "job001"
    elsewhere.mkdir(parents=True)
    edit_star(project / "particles.star", lambda b: None)
    shutil.move(project / "particles.star", elsewhere / "run_data.star")
    with pytest.raises(InputError) as error:
        read_particles(elsewhere / "run_data.star")
    _expect(error, "rlnImageName", "particles.mrcs", "project root")
    particles = read_particles(elsewhere / "run_data.star", project_root=project)
    assert particles.image_files[0] == (project / "particles.mrcs").resolve()


def test_lazy_reads_match_stack(small_dataset: Path) -> None:
    particles = read_particles(small_dataset / "particles.star")
    source = ImageSource(particles)
    picked = np.array([5, 0, 199, 17])
    with mrcfile.open(small_dataset / "particles.mrcs") as mrc:
        expected = np.asarray(mrc.data)[picked]
    np.testing.assert_array_equal(source.read(picked), expected)
    source.close()


# --- bad input: one clear error each, naming file, field, expected and found -------------


def test_missing_star_column(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    edit_star(
        data / "particles.star",
        lambda b: b.__setitem__("particles", b["particles"].drop(columns="rlnAngleTilt")),
    )
    with pytest.raises(InputError) as error:
        read_particles(data / "particles.star")
    _expect(error, "particles.star", "rlnAngleTilt", "expected a column", "found none")


def test_missing_optics_column(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    edit_star(
        data / "particles.star",
        lambda b: b.__setitem__("optics", b["optics"].drop(columns="rlnVoltage")),
    )
    with pytest.raises(InputError) as error:
        read_particles(data / "particles.star")
    _expect(error, "rlnVoltage", "data_optics")


def test_non_numeric_value(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)

    def corrupt(blocks: dict[str, pd.DataFrame]) -> None:
        blocks["particles"]["rlnDefocusU"] = blocks["particles"]["rlnDefocusU"].astype(object)
        blocks["particles"].loc[7, "rlnDefocusU"] = "nan"

    edit_star(data / "particles.star", corrupt)
    with pytest.raises(InputError) as error:
        read_particles(data / "particles.star")
    _expect(error, "rlnDefocusU", "row 8", "a finite number")


def test_missing_stack(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    (data / "particles.mrcs").unlink()
    with pytest.raises(InputError) as error:
        read_particles(data / "particles.star")
    _expect(error, "rlnImageName", "an existing stack 'particles.mrcs'", "no file")


def test_truncated_stack(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    stack = data / "particles.mrcs"
    size = stack.stat().st_size
    with open(stack, "r+b") as handle:
        handle.truncate(size - 64 * 64 * 4 * 3)
    particles = read_particles(data / "particles.star")
    with pytest.raises(InputError) as error:
        validate_stacks(particles)
    _expect(error, "particles.mrcs", "data block", "truncated")


def test_index_past_end_of_stack(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)

    def past_end(blocks: dict[str, pd.DataFrame]) -> None:
        blocks["particles"].loc[3, "rlnImageName"] = "000201@particles.mrcs"

    edit_star(data / "particles.star", past_end)
    particles = read_particles(data / "particles.star")
    with pytest.raises(InputError) as error:
        validate_stacks(particles)
    _expect(error, "particles.star", "rlnImageName", "<= 200", "201@particles.mrcs")


def test_image_size_disagrees_with_optics(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)

    def wrong_size(blocks: dict[str, pd.DataFrame]) -> None:
        blocks["optics"]["rlnImageSize"] = 96

    edit_star(data / "particles.star", wrong_size)
    particles = read_particles(data / "particles.star")
    with pytest.raises(InputError) as error:
        validate_stacks(particles)
    _expect(error, "particles.mrcs", "image size", "96 px", "found 64 px")


def _write_stack(path: Path, images: np.ndarray) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(images.astype(np.float32))
        mrc.set_image_stack()


@pytest.mark.parametrize(
    ("shape", "fragment"), [((4, 63, 63), "even box size"), ((4, 64, 48), "square images")]
)
def test_odd_or_non_square_box(
    small_dataset: Path, tmp_path: Path, shape: tuple[int, ...], fragment: str
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    _write_stack(data / "particles.mrcs", np.zeros(shape))
    particles = read_particles(data / "particles.star")
    with pytest.raises(InputError) as error:
        validate_stacks(particles)
    _expect(error, "particles.mrcs", fragment)


def test_nan_pixels(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    with mrcfile.open(data / "particles.mrcs", mode="r+") as mrc:
        mrc.data[42, 10, 10] = np.inf
    particles = read_particles(data / "particles.star")
    with pytest.raises(InputError) as error:
        validate_stacks(particles)
    _expect(error, "particles.mrcs", "image 43", "finite pixel values", "NaN or Inf")


def test_invalid_random_subset(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    edit_star(data / "particles.star", lambda b: b["particles"].__setitem__("rlnRandomSubset", 3))
    with pytest.raises(InputError) as error:
        read_particles(data / "particles.star")
    _expect(error, "rlnRandomSubset", "1 or 2", "3")


def test_map_box_or_voxel_size_disagrees(tmp_path: Path) -> None:
    write_volume(tmp_path / "map.mrc", np.zeros((48, 48, 48), np.float32), 2.0)
    volume = read_volume(tmp_path / "map.mrc")
    with pytest.raises(InputError) as error:
        check_volume_matches(volume, 64, 2.0, "consensus map")
    _expect(error, "map.mrc", "consensus map box size", "64 px", "found 48 px")
    other = Volume(np.zeros((64, 64, 64), np.float32), 1.5, tmp_path / "map.mrc")
    with pytest.raises(InputError) as error:
        check_volume_matches(other, 64, 2.0, "mask")
    _expect(error, "mask voxel size", "2.0000 Å", "1.5000 Å")


def test_map_with_nan_is_rejected(tmp_path: Path) -> None:
    data = np.zeros((32, 32, 32), np.float32)
    data[1, 2, 3] = np.nan
    # a map from elsewhere: our own writer refuses NaN (test_input_checks.py)
    with warnings.catch_warnings(), mrcfile.new(tmp_path / "bad.mrc") as mrc:
        warnings.simplefilter("ignore")  # mrcfile warns about NaN statistics on writing
        mrc.set_data(data)
        mrc.voxel_size = 2.0
    with pytest.raises(InputError) as error:
        read_volume(tmp_path / "bad.mrc")
    _expect(error, "bad.mrc", "finite voxel values")


def test_cli_reports_bad_input_in_one_line(
    small_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    (data / "particles.mrcs").unlink()
    code = main(
        [
            "split-halves",
            "--star",
            str(data / "particles.star"),
            "--out",
            str(tmp_path / "halves.csv"),
        ]
    )
    assert code == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "bad input" in errors[0].getMessage()
    assert errors[0].exc_info is None
    assert not (tmp_path / "halves.csv").exists()
