"""Issue class 2: artefacts that do not belong together are refused, not turned into numbers.

Every artefact says what made it (a model its half and training run, its latent table the
same, a half map its kind, half and half split, a particle store its source stacks), and
each consumer checks that its inputs are one run's. Each probe here gave a confident number
with exit code 0 before.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from star_tools import copy_dataset

from dynamight_core.cli import main
from dynamight_core.data.halves import read_split
from dynamight_core.errors import InputError
from dynamight_core.io.identity import (
    MapOrigin,
    check_latents_from_model,
    check_negative_control,
    check_postprocessed_pairs,
)
from dynamight_core.io.mrc import read_half_maps, read_volume, write_volume
from dynamight_core.io.particle_store import open_particle_store
from dynamight_core.io.star import read_particles
from dynamight_core.training.half_set_vae import load_half_set_vae, save_half_set_vae

HALVES = (1, 2)


def _bad_input(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a stage in-process; it must stop on bad input (exit 2) with no traceback."""
    code = main(list(argv))
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2, text
    assert "Traceback" not in text
    return text


# ---- half maps: the same file, the same data, one half twice, two reconstructions ----


def _map(folder: Path, name: str, seed: int, origin: MapOrigin | None) -> Path:
    data = np.random.default_rng(seed).normal(size=(16, 16, 16)).astype(np.float32)
    path = folder / name
    write_volume(path, data, 1.06, origin)
    return path


def test_map_origin_is_kept_in_the_header(tmp_path: Path) -> None:
    origin = MapOrigin("deformed", 2, "0123456789abcdef")
    assert read_volume(_map(tmp_path, "a.mrc", 0, origin)).origin == origin
    assert read_volume(_map(tmp_path, "b.mrc", 0, None)).origin is None


@pytest.mark.parametrize(
    ("second_seed", "origins", "field"),
    [
        (1, (MapOrigin("consensus", 1, "s"), MapOrigin("consensus", 1, "s")), "half"),
        (1, (MapOrigin("consensus", 1, "s"), MapOrigin("deformed", 2, "s")), "kind"),
        (1, (MapOrigin("deformed", 1, "s"), MapOrigin("deformed", 2, "t")), "split"),
        (0, (None, None), "data"),
    ],
)
def test_half_maps_that_are_not_one_pair_are_refused(
    tmp_path: Path, second_seed: int, origins: tuple, field: str
) -> None:
    first = _map(tmp_path, "one.mrc", 0, origins[0])
    second = _map(tmp_path, "two.mrc", second_seed, origins[1])
    with pytest.raises(InputError, match=field) as error:
        read_half_maps([first, second])
    assert str(first) in str(error.value) and str(second) in str(error.value)


def test_one_half_map_twice_is_refused(tmp_path: Path) -> None:
    path = _map(tmp_path, "one.mrc", 0, None)
    with pytest.raises(InputError, match="the same file twice"):
        read_half_maps([path, path])


def test_a_true_pair_and_an_unlabelled_pair_are_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pair = [_map(tmp_path, f"h{h}.mrc", h, MapOrigin("null", h, "s")) for h in HALVES]
    assert read_half_maps(pair)[1].origin == MapOrigin("null", 2, "s")
    foreign = [_map(tmp_path, f"f{h}.mrc", h, None) for h in HALVES]
    with caplog.at_level(logging.WARNING):
        read_half_maps(foreign)
    assert "no origin label" in caplog.text


# ---- latents and models ----


def test_latents_of_another_run_or_half_are_refused() -> None:
    check_latents_from_model("l.csv", "abc", 1, "m.pt", "abc", 1)
    with pytest.raises(InputError, match="model_run"):
        check_latents_from_model("l.csv", "other", 1, "m.pt", "abc", 1)
    with pytest.raises(InputError, match="half set 2"):
        check_latents_from_model("l.csv", "abc", 2, "m.pt", "abc", 1)


# ---- the report's inputs ----


def test_report_refuses_swapped_pairs_and_its_own_summary_as_control() -> None:
    def record(label: str, kind: str, split: str = "s") -> dict:
        return {"label": label, "half_maps": {"kind": kind, "split": split}}

    paths = {label: f"{label}.json" for label in ("consensus", "deformed")}
    good = {
        "consensus": record("consensus", "consensus"),
        "deformed": record("deformed", "deformed"),
    }
    assert check_postprocessed_pairs(paths, good) == "s"
    swapped = {"consensus": good["deformed"], "deformed": good["consensus"]}
    with pytest.raises(InputError, match=r"consensus\.json"):
        check_postprocessed_pairs(paths, swapped)
    relabelled = {**good, "deformed": record("deformed", "consensus")}
    with pytest.raises(InputError, match="label"):
        check_postprocessed_pairs(paths, relabelled)
    mixed = {**good, "deformed": record("deformed", "deformed", "t")}
    with pytest.raises(InputError, match="split"):
        check_postprocessed_pairs(paths, mixed)
    check_negative_control("other/summary.json", {"origin": {"split": "t"}}, "s")
    with pytest.raises(InputError, match="own half split"):
        check_negative_control("summary.json", {"origin": {"split": "s"}}, "s")


# ---- a particle store over other images ----


def test_store_over_changed_images_is_refused(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"
    store = tmp_path / "store"
    halves = tmp_path / "halves.csv"
    assert main(["split-halves", "--star", str(star), "--out", str(halves)]) == 0
    common = ["--star", str(star), "--halves", str(halves), "--half", "1"]
    assert main(["store-particles", *common, "--out", str(store)]) == 0
    particles = read_particles(star)
    rows = np.sort(np.concatenate(read_split(halves, particles, 1)))
    open_particle_store(store, particles, rows).close()
    stack = Path(particles.image_files[0])
    raw = bytearray(stack.read_bytes())
    raw[-4000:] = bytes(4000)  # other pixel values, same size, same STAR file
    stack.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="changed since store-particles"):
        open_particle_store(store, read_particles(star), rows)


def test_corrupt_store_files_are_named(small_dataset: Path, tmp_path: Path) -> None:
    data = copy_dataset(small_dataset, tmp_path)
    star = data / "particles.star"
    store, halves = tmp_path / "store", tmp_path / "halves.csv"
    assert main(["split-halves", "--star", str(star), "--out", str(halves)]) == 0
    common = ["--star", str(star), "--halves", str(halves), "--half", "1"]
    assert main(["store-particles", *common, "--out", str(store)]) == 0
    particles = read_particles(star)
    rows = np.sort(np.concatenate(read_split(halves, particles, 1)))
    images = store / "images.npy"
    raw = bytearray(images.read_bytes())
    raw[10:40] = b"x" * 30  # the .npy header
    images.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"images\.npy"):
        open_particle_store(store, particles, rows)


# ---- on the demo run: the real artefacts ----


def test_demo_artefacts_say_what_made_them(local_run: Path) -> None:
    results = local_run / "results"
    runs = []
    for half in HALVES:
        vae = load_half_set_vae(results / f"vae/half{half}/model.pt")
        table = pd.read_csv(results / f"vae/half{half}/latents.csv", dtype={"model_run": str})
        assert vae.half == half and len(vae.run) == 16
        assert set(table["model_run"]) == {vae.run} and set(table["half"]) == {half}
        runs.append(vae.run)
        for kind in ("consensus", "deformed"):
            origin = read_volume(results / f"{kind}/half{half}.mrc").origin
            assert origin is not None and (origin.kind, origin.half) == (kind, half)
    assert runs[0] != runs[1]
    summary = json.loads((results / "summary.json").read_text())
    assert summary["origin"]["split"]


def _vae_of_another_run(results: Path, tmp_path: Path) -> Path:
    vae = load_half_set_vae(results / "vae/half1/model.pt")
    vae.run = "0" * 16
    path = tmp_path / "another_run.pt"
    save_half_set_vae(path, vae)
    return path


def test_demo_mismatched_latents_and_models_are_refused(
    local_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = local_run / "results"
    model = [str(results / f"vae/half{h}/model.pt") for h in HALVES]
    latents = [str(results / f"vae/half{h}/latents.csv") for h in HALVES]
    other = str(_vae_of_another_run(results, tmp_path))
    out = str(tmp_path / "out")
    text = _bad_input(
        capsys, "explore", "pseudo-atoms", "--model", model[0], "--latents", latents[1],
        "--out-cif", f"{out}.cif",
    )  # fmt: skip
    assert "half set 2" in text
    text = _bad_input(
        capsys, "latent-space", "--model", other, "--latents", latents[0],
        "--out-png", f"{out}.png", "--out-displacement-png", f"{out}_d.png",
        "--out-json", f"{out}.json",
    )  # fmt: skip
    assert "model_run" in text and other in text
    star = str(results / "simulated/particles.star")
    halves = str(results / "halves.csv")
    text = _bad_input(
        capsys, "deformation-error", "--star", star, "--halves", halves,
        "--models", model[0], model[0], "--out-json", f"{out}.json", "--out-tsv", f"{out}.tsv",
        "--out-gaussians", f"{out}_g.tsv", "--out-png", f"{out}.png",
    )  # fmt: skip
    assert "a model of half set 2" in text


def test_demo_same_or_swapped_half_maps_are_refused(
    local_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = local_run / "results"
    half1 = str(results / "consensus/half1.mrc")
    out = [f"--out-{kind}" for kind in ("tsv", "json", "png")]
    outputs = [value for pair in zip(out, ("a.tsv", "a.json", "a.png"), strict=True)
               for value in (pair[0], str(tmp_path / pair[1]))]  # fmt: skip
    text = _bad_input(capsys, "fsc", "--half1", half1, "--half2", half1, *outputs)
    assert "the same file twice" in text
    copy = tmp_path / "copy of half1.mrc"
    shutil.copy(half1, copy)
    text = _bad_input(capsys, "fsc", "--half1", half1, "--half2", str(copy), *outputs)
    assert "identical voxel values" in text
    # a consensus half with a deformed one; a consensus pair labelled deformed
    for second, named in (
        ("deformed/half2.mrc", "kind"),
        ("consensus/half2.mrc", "a deformed half map"),
    ):
        text = _bad_input(
            capsys, "postprocess", "--half-maps", half1, str(results / second),
            "--mask", str(results / "postprocess/mask.mrc"), "--label", "deformed",
            "--out-sharpened", str(tmp_path / "s.mrc"), *outputs,
        )  # fmt: skip
        assert named in text, second
    assert not (tmp_path / "s.mrc").exists()


# ---- explore select ----


def test_select_excludes_particles_without_latent_and_refuses_an_empty_region(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    star = small_dataset / "particles.star"
    count = len(read_particles(star).euler_deg)
    rows = np.arange(0, count, 2)  # one half set's table only
    latents = np.random.default_rng(0).normal(size=(len(rows), 2))
    table = pd.DataFrame({"row": rows, "mu_0": latents[:, 0], "mu_1": latents[:, 1]})
    path = tmp_path / "latents.csv"
    table.to_csv(path, index=False)
    selected, complement = tmp_path / "selected.star", tmp_path / "complement.star"
    base = ["explore", "select", "--latents", str(path), "--star", str(star)]
    outputs = ["--out-selected", str(selected), "--out-complement", str(complement)]
    assert main([*base, "--pc-percentiles", "1:0:50", *outputs]) == 0
    import starfile

    chosen = len(starfile.read(selected, always_dict=True)["particles"])
    rest = len(starfile.read(complement, always_dict=True)["particles"])
    assert chosen + rest == len(rows) < count
    selected.unlink()
    complement.unlink()
    text = _bad_input(capsys, *base, "--pc-range", "1:1000:2000", *outputs)
    assert "--pc-range" in text
    assert not selected.exists() and not complement.exists()


# ---- too few particles ----


def test_too_few_particles_warn_or_stop(
    small_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    star = str(small_dataset / "particles.star")  # 100 particles per half set
    out = tmp_path / "halves.csv"
    assert main(["split-halves", "--star", star, "--out", str(out)]) == 0
    assert "fewer than split.min_particles_per_half (500)" in capsys.readouterr().err
    assert (
        main(["split-halves", "--star", star, "--out", str(out), "--min-particles-per-half", "50"])
        == 0
    )
    assert "min_particles_per_half" not in capsys.readouterr().err
    out.unlink()
    text = _bad_input(
        capsys, "split-halves", "--star", star, "--out", str(out), "--too-few-particles", "stop"
    )
    assert "half set 1" in text and "100 particles" in text
    assert not out.exists()
