"""The particle store: what it holds, that it reads as the stacks do, and what it refuses."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from star_tools import copy_dataset, edit_star

from dynamight_core.cli import main
from dynamight_core.data.batches import BatchReader
from dynamight_core.data.store_images import (
    cropped_transforms,
    store_layout,
    training_images,
    write_half_set_store,
)
from dynamight_core.errors import InputError
from dynamight_core.io.particle_store import (
    IMAGES_FILE,
    MANIFEST_FILE,
    TABLE_FILE,
    open_particle_store,
    read_manifest,
)
from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import ParticleSet, read_particles
from dynamight_core.io.store_copy import local_store
from dynamight_core.training.half_set_vae import TrainingGrid
from dynamight_core.training.likelihood import max_shell_for

CROP_PX = 32  # of the fixture's 64 px box
CPU = torch.device("cpu")


@pytest.fixture
def particles(small_dataset: Path) -> ParticleSet:
    return read_particles(small_dataset / "particles.star")


@pytest.fixture
def rows(particles: ParticleSet) -> np.ndarray:
    """A half set's rows: every other particle, the last left out."""
    return np.arange(0, len(particles) - 1, 2)


def _store(
    folder: Path,
    particles: ParticleSet,
    rows: np.ndarray,
    precision: str = "float32",
    chunk: int = 16,
) -> Path:
    path = folder / f"store_{precision}_{chunk}"
    write_half_set_store(path, particles, rows, store_layout(particles, CROP_PX, precision), chunk)
    return path


def test_store_holds_the_cropped_transforms_and_metadata(
    tmp_path: Path, particles: ParticleSet, rows: np.ndarray
) -> None:
    store = open_particle_store(_store(tmp_path, particles, rows), particles, rows)
    images = np.load(store.path / IMAGES_FILE, mmap_mode="r")
    assert images.shape == (len(rows), CROP_PX, CROP_PX // 2 + 1, 2)
    assert images.dtype == np.float32
    some = rows[[5, 0, 17]]
    expected = torch.view_as_real(cropped_transforms(ImageSource(particles).read(some), CROP_PX))
    assert np.array_equal(store.read(some), expected.numpy())
    with np.load(store.path / TABLE_FILE) as table:
        assert np.array_equal(table["rows"], rows)
        assert np.array_equal(table["defocus_u_a"], particles.defocus_u_a[rows])
        assert np.array_equal(table["euler_deg"], particles.euler_deg[rows])
    manifest = read_manifest(store.path)
    assert (manifest["box_px"], manifest["full_box_px"]) == (CROP_PX, particles.box_px)
    with pytest.raises(ValueError, match="not in the store"):
        store.read(np.array([rows[0] + 1]))


def test_float32_store_batches_are_bit_identical_to_stack_batches(
    tmp_path: Path, particles: ParticleSet, rows: np.ndarray
) -> None:
    store = open_particle_store(_store(tmp_path, particles, rows), particles, rows)
    from_stacks = BatchReader(particles, ImageSource(particles), CPU, crop_px=CROP_PX)
    from_store = BatchReader(particles, store, CPU, crop_px=CROP_PX)
    pairs = zip(
        from_stacks.batches(rows, 13, shuffle_seed=4),
        from_store.batches(rows, 13, shuffle_seed=4),
        strict=True,
    )
    for stacks, stored in pairs:
        assert np.array_equal(stacks.indices, stored.indices)
        assert stored.images_ft.shape == (len(stored.indices), CROP_PX, CROP_PX // 2 + 1)
        assert stored.ctf.shape == stored.images_ft.shape
        for name in ("images_ft", "ctf", "rotations", "shifts_a"):
            assert torch.equal(getattr(stacks, name), getattr(stored, name)), name


def test_cropped_batch_is_the_crop_of_the_full_batch(
    particles: ParticleSet, rows: np.ndarray
) -> None:
    """The cropped grid is the full box's transform and CTF at the low frequencies."""
    source = ImageSource(particles)
    full = BatchReader(particles, source, CPU).read(rows[:8])
    cropped = BatchReader(particles, source, CPU, crop_px=CROP_PX).read(rows[:8])
    keep = [*range(CROP_PX // 2), *range(particles.box_px - CROP_PX // 2, particles.box_px)]
    assert torch.equal(cropped.images_ft, full.images_ft[:, keep, : CROP_PX // 2 + 1])
    torch.testing.assert_close(
        cropped.ctf, full.ctf[:, keep, : CROP_PX // 2 + 1], rtol=0.0, atol=1e-5
    )


def test_float16_store_is_within_its_precision(
    tmp_path: Path, particles: ParticleSet, rows: np.ndarray
) -> None:
    store = open_particle_store(_store(tmp_path, particles, rows, "float16"), particles, rows)
    assert np.load(store.path / IMAGES_FILE, mmap_mode="r").dtype == np.float16
    exact = BatchReader(particles, ImageSource(particles), CPU, crop_px=CROP_PX).read(rows)
    rounded = BatchReader(particles, store, CPU, crop_px=CROP_PX).read(rows)
    error = (rounded.images_ft - exact.images_ft).abs()
    assert float(error.max()) > 0.0  # it is float16
    # half a unit in the last place of an 11-bit significand, plus float16's smallest step
    bound = exact.images_ft.abs() * 2.0**-11 + 2.0**-24 * particles.box_px
    assert bool((error <= bound * 1.01).all())
    assert torch.equal(rounded.ctf, exact.ctf)


def test_chunked_writing_gives_the_same_files(
    tmp_path: Path, particles: ParticleSet, rows: np.ndarray
) -> None:
    chunked = _store(tmp_path, particles, rows, chunk=7)
    whole = _store(tmp_path, particles, rows, chunk=len(rows))
    for name in (IMAGES_FILE, TABLE_FILE):
        assert (chunked / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_store_without_manifest_is_refused(
    tmp_path: Path, particles: ParticleSet, rows: np.ndarray
) -> None:
    path = _store(tmp_path, particles, rows)
    (path / MANIFEST_FILE).unlink()
    with pytest.raises(InputError, match=r"store\.json"):
        open_particle_store(path, particles, rows)


def test_an_interrupted_write_leaves_nothing(
    tmp_path: Path, particles: ParticleSet, rows: np.ndarray
) -> None:
    from dynamight_core.io.particle_store import write_particle_store

    calls = []

    def failing(chunk: np.ndarray) -> np.ndarray:
        calls.append(chunk)
        if len(calls) == 3:
            raise KeyboardInterrupt
        values = cropped_transforms(ImageSource(particles).read(chunk), CROP_PX)
        return torch.view_as_real(values).numpy()

    path = tmp_path / "store"
    layout = store_layout(particles, CROP_PX, "float32")
    with pytest.raises(KeyboardInterrupt):
        write_particle_store(path, particles, rows, layout, failing, 8)
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


def test_a_store_does_not_overwrite_other_files(
    tmp_path: Path, particles: ParticleSet, rows: np.ndarray
) -> None:
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not overwritten"):
        write_half_set_store(
            tmp_path / "user", particles, rows, store_layout(particles, CROP_PX, "float32")
        )
    assert (tmp_path / "user" / "notes.txt").read_text() == "mine"


def test_a_store_of_a_changed_defocus_is_refused(
    small_dataset: Path, tmp_path: Path, rows: np.ndarray
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"
    path = _store(tmp_path, read_particles(star), rows)

    def refine_ctf(blocks: dict) -> None:
        blocks["particles"].loc[int(rows[3]), "rlnDefocusU"] += 50.0

    edit_star(star, refine_ctf)
    with pytest.raises(InputError, match=f"defocus_u_a of STAR row {rows[3] + 1}") as error:
        open_particle_store(path, read_particles(star), rows)
    assert error.value.source == str(path / TABLE_FILE)


def test_a_store_of_a_star_with_a_removed_row_is_refused(
    small_dataset: Path, tmp_path: Path, rows: np.ndarray
) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"
    path = _store(tmp_path, read_particles(star), rows)

    def remove_first(blocks: dict) -> None:
        blocks["particles"] = blocks["particles"].iloc[1:].reset_index(drop=True)

    edit_star(star, remove_first)
    with pytest.raises(InputError, match="rlnImageName of STAR row 1"):
        open_particle_store(path, read_particles(star), rows)
    with pytest.raises(InputError, match="rows"):
        open_particle_store(path, read_particles(star), rows[1:])


def test_another_box_or_pixel_size_is_refused(
    tmp_path: Path, particles: ParticleSet, rows: np.ndarray
) -> None:
    path = _store(tmp_path, particles, rows)
    particles.pixel_size_a *= 1.01
    with pytest.raises(InputError, match="pixel_size_a"):
        open_particle_store(path, particles, rows)


def test_training_refuses_a_store_of_another_grid(
    tmp_path: Path, particles: ParticleSet, rows: np.ndarray
) -> None:
    path = _store(tmp_path, particles, rows)
    with (
        pytest.raises(InputError, match=r"vae\.max_resolution_a"),
        training_images(particles, rows, CROP_PX + 2, path, None),
    ):
        pass
    store = open_particle_store(path, particles, rows)
    with pytest.raises(ValueError, match="crop_px"):
        BatchReader(particles, store, CPU)


def test_local_copy_is_used_and_removed(
    tmp_path: Path,
    particles: ParticleSet,
    rows: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = _store(tmp_path, particles, rows)
    monkeypatch.setenv("NODE_SCRATCH", str(tmp_path / "scratch"))
    caplog.set_level(logging.INFO)
    with training_images(particles, rows, CROP_PX, path, "$NODE_SCRATCH/job") as store:
        copy = store.path
        assert copy.parent == tmp_path / "scratch" / "job"
        assert (copy / MANIFEST_FILE).read_text() == (path / MANIFEST_FILE).read_text()
        assert np.array_equal(
            store.read(rows[:4]), open_particle_store(path, particles, rows).read(rows[:4])
        )
        with local_store(path, "$NODE_SCRATCH/job") as again:
            assert again == copy
    assert not copy.exists()
    assert any("copied the particle store" in m and "GB in" in m for m in caplog.messages)
    assert any("reusing the identical local copy" in m for m in caplog.messages)
    monkeypatch.delenv("NODE_SCRATCH")
    with pytest.raises(InputError, match=r"store\.local_copy"), local_store(path, "$NODE_SCRATCH"):
        pass


def test_store_particles_stage_end_to_end(small_dataset: Path, tmp_path: Path) -> None:
    star = str(small_dataset / "particles.star")
    halves = str(tmp_path / "halves.csv")
    assert main(["split-halves", "--star", star, "--out", halves]) == 0
    out = tmp_path / "store" / "half2"
    command = ["store-particles", "--star", star, "--halves", halves, "--half", "2"]
    grid = ["--max-resolution-a", "10", "--encoder-px", "16", "--threads", "1"]
    assert main([*command, *grid, "--precision", "float16", "--out", str(out)]) == 0
    particles = read_particles(star)
    from dynamight_core.data.halves import read_halves

    half_rows = np.flatnonzero(read_halves(halves, particles) == 2)
    store = open_particle_store(out, particles, half_rows)
    expected = TrainingGrid.choose(
        particles.box_px,
        particles.pixel_size_a,
        max_shell_for(particles.box_px, particles.pixel_size_a, 10.0),
        16,
    )
    assert store.box_px == expected.box_px < particles.box_px
    assert store.layout.precision == "float16"
    assert sorted(p.name for p in out.iterdir()) == [IMAGES_FILE, MANIFEST_FILE, TABLE_FILE]
    # a second run replaces the store (as Snakemake's rerun does)
    first_id = read_manifest(out)["store_id"]
    assert main([*command, *grid, "--out", str(out)]) == 0
    assert read_manifest(out)["store_id"] != first_id
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["half2"]
