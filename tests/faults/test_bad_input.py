"""Issue class 3: a foreseeable bad input gives one error line (exit 2), never a traceback.

Each row runs one stage in-process on one bad input made below (maps at box 32, 2 Å/px, a
tiny half-set VAE and its latent table, the small simulated dataset) and checks the exit
code, that exactly one error line is logged and names the file at fault, and that no
traceback is printed. The last tests take a pure-noise pair of half maps through
post-processing, local resolution and the report's verdict: no resolution, no gain.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
from test_viewer_session import write_viewer_files

from dynamight_core.cli import main
from dynamight_core.geometry.masks import spherical_mask
from dynamight_core.io.mrc import read_volume, write_volume
from dynamight_core.report.html import Page, maps_table
from dynamight_core.report.summary import ReportInputs, build_summary
from dynamight_core.stages.report import headline

BOX = 32
PIXEL_A = 2.0
LATENT_DIM = 3  # write_viewer_files's

Files = dict[str, str]


def _noise(seed: int, box: int = BOX) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(box,) * 3).astype(np.float32)


def _blob(seed: int) -> np.ndarray:
    """A smooth blob plus a little noise: half maps with a resolution."""
    blob = spherical_mask(BOX, 6.0, 4.0)
    return (blob + 0.05 * _noise(seed)).astype(np.float32)


def _write_maps(folder: Path) -> Files:
    """Good and bad maps, masks and other files, by name."""
    mask = spherical_mask(BOX, 10.0, 3.0)
    volumes = {
        "noise1": (_noise(1), PIXEL_A),
        "noise2": (_noise(2), PIXEL_A),
        "noise3": (_noise(10), PIXEL_A),
        "noise4": (_noise(11), PIXEL_A),
        "noise5": (_noise(12), PIXEL_A),
        "noise6": (_noise(13), PIXEL_A),
        "blob1": (_blob(3), PIXEL_A),
        "blob2": (_blob(4), PIXEL_A),
        "mask": (mask, PIXEL_A),
        "zero_mask": (np.zeros((BOX,) * 3, np.float32), PIXEL_A),
        "negative_mask": (-mask, PIXEL_A),
        "faint_mask": (0.2 * mask, PIXEL_A),
        "map_as_mask": (10.0 * _blob(5), PIXEL_A),
        "mask_box48": (spherical_mask(48, 10.0, 3.0), PIXEL_A),
        "mask_pixel3": (mask, 3.0),
        "noise_box48": (_noise(6, 48), PIXEL_A),
        "noise_pixel3": (_noise(7), 3.0),
        "zero_map": (np.zeros((BOX,) * 3, np.float32), PIXEL_A),
    }
    files = {}
    for name, (data, pixel) in volumes.items():
        path = folder / f"{name}.mrc"
        write_volume(path, data, pixel)
        files[name] = str(path)
    text = folder / "not_a_map.mrc"
    text.write_text("this is not an MRC file\n" * 50)
    empty = folder / "empty.mrc"
    empty.write_bytes(b"")
    odd = folder / "odd_box.mrc"
    with mrcfile.new(odd, overwrite=True) as mrc:
        mrc.set_data(_noise(8, 31))
        mrc.voxel_size = PIXEL_A
    nan = folder / "nan_map.mrc"
    with mrcfile.new(nan, overwrite=True) as mrc, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile warns of the NaN
        data = _noise(9)
        data[3, 4, 5] = np.nan
        mrc.set_data(data)
        mrc.voxel_size = PIXEL_A
    (folder / "empty.star").write_text("")
    (folder / "empty.pt").write_bytes(b"")
    files.update(
        not_a_map=str(text),
        empty_map=str(empty),
        odd_box=str(odd),
        nan_map=str(nan),
        missing=str(folder / "missing.mrc"),
        empty_star=str(folder / "empty.star"),
        empty_pt=str(folder / "empty.pt"),
    )
    return files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path) -> Files:
    folder = tmp_path_factory.mktemp("bad_input")
    made = _write_maps(folder)
    made.update({name: str(path) for name, path in write_viewer_files(folder).items()})
    made["data_star"] = str(small_dataset / "particles.star")
    halves = folder / "halves.csv"
    assert main(["split-halves", "--star", made["data_star"], "--out", str(halves)]) == 0
    made["halves"] = str(halves)
    made["out"] = str(folder / "out")
    return made


def _fsc(half1: str, half2: str, mask: str | None = None) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        out = f["out"]
        masked = ["--mask", f[mask]] if mask else []
        return [
            "fsc", "--half1", f[half1], "--half2", f[half2], *masked,
            "--out-tsv", f"{out}.tsv", "--out-json", f"{out}.json", "--out-png", f"{out}.png",
        ]  # fmt: skip

    return argv


def _postprocess(half1: str, half2: str, mask: str) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        out = f["out"]
        return [
            "postprocess", "--half-maps", f[half1], f[half2], "--mask", f[mask],
            "--out-sharpened", f"{out}.mrc", "--out-tsv", f"{out}.tsv",
            "--out-json", f"{out}.json", "--out-png", f"{out}.png",
        ]  # fmt: skip

    return argv


def _local(
    deformed: tuple[str, str] = ("noise2", "noise1"), mask: str = "mask", window: int = 16
) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        out = f["out"]
        return [
            "local-resolution", "--consensus-half-maps", f["noise1"], f["noise2"],
            "--deformed-half-maps", f[deformed[0]], f[deformed[1]], "--mask", f[mask],
            "--window-px", str(window), "--device", "cpu",
            "--out-consensus", f"{out}_c.mrc", "--out-deformed", f"{out}_d.mrc",
            "--out-difference", f"{out}_g.mrc", "--out-json", f"{out}.json",
            "--out-png", f"{out}.png",
        ]  # fmt: skip

    return argv


def _make_mask(volume: str, *extra: str) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        out = f["out"]
        return [
            "make-mask", "--map", f[volume], *extra,
            "--out-mask", f"{out}_mask.mrc", "--out-json", f"{out}_mask.json",
        ]  # fmt: skip

    return argv


def _fsc_deformed(
    consensus: tuple[str, str] = ("noise2", "noise1"), mask: str = "mask"
) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        out = f["out"]
        return [
            "fsc-deformed", "--half-maps", f["noise1"], f["noise2"],
            "--iterations", f["empty_pt"], f["empty_pt"],
            "--consensus-half-maps", f[consensus[0]], f[consensus[1]],
            "--consensus-full", f["blob1"], "--mask", f[mask],
            "--out-full", f"{out}_full.mrc", "--out-tsv", f"{out}.tsv",
            "--out-json", f"{out}.json", "--out-png", f"{out}.png",
            "--out-summary", f"{out}.txt",
        ]  # fmt: skip

    return argv


def _explore_maps(model: str, points: str) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        return [
            "explore", "maps", "--model", f[model], "--latents", f["latents"],
            f"--points={points}", "--out-dir", f"{f['out']}_maps", "--device", "cpu",
        ]  # fmt: skip

    return argv


def _explore_movie(model: str, start: str) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        return [
            "explore", "movie", "--model", f[model], "--latents", f["latents"],
            f"--start={start}", "--end=0,0,0", "--out-dir", f"{f['out']}_movie",
            "--out-animation", f"{f['out']}_movie.gif", "--device", "cpu",
        ]  # fmt: skip

    return argv


def _pseudo_atoms(model: str) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        return ["explore", "pseudo-atoms", "--model", f[model], "--out-cif", f"{f['out']}.cif"]

    return argv


def _latent_space(model: str) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        out = f["out"]
        return [
            "latent-space", "--model", f[model], "--latents", f["latents"],
            "--out-png", f"{out}.png", "--out-displacement-png", f"{out}_d.png",
            "--out-json", f"{out}.json", "--device", "cpu",
        ]  # fmt: skip

    return argv


def _with_particles(stage: str, model: str) -> Callable[[Files], list[str]]:
    """warmup or train-vae of half 1 given ``model`` as its consensus fit or warm-up."""

    def argv(f: Files) -> list[str]:
        out = f["out"]
        common = [
            stage, "--star", f["data_star"], "--halves", f["halves"], "--half", "1",
            "--model", f[model], "--device", "cpu", "--out-model", f"{out}_{stage}.pt",
            "--out-history", f"{out}_{stage}.tsv",
        ]  # fmt: skip
        if stage == "train-vae":
            common += ["--out-latents", f"{out}_l.csv", "--out-png", f"{out}_t.png"]
        return common

    return argv


def _star_stage(stage: str, star: str) -> Callable[[Files], list[str]]:
    def argv(f: Files) -> list[str]:
        out = f["out"]
        if stage == "split-halves":
            return [stage, "--star", f[star], "--out", f"{out}_halves.csv"]
        return [
            stage, "--star", f[star], "--halves", f["halves"], "--device", "cpu",
            "--out-half1", f"{out}_1.mrc", "--out-half2", f"{out}_2.mrc",
            "--out-full", f"{out}_full.mrc",
        ]  # fmt: skip

    return argv


# (id, command line, the file the error must name, further text it must hold)
ROWS: list[tuple[str, Callable[[Files], list[str]], str, tuple[str, ...]]] = [
    ("fsc-half-wrong-box", _fsc("noise1", "noise_box48"), "noise_box48", ("48 px", "32 px")),
    ("fsc-half-wrong-pixel", _fsc("noise1", "noise_pixel3"), "noise_pixel3", ("3.0000 Å",)),
    ("fsc-not-an-mrc", _fsc("not_a_map", "noise2"), "not_a_map", ()),
    ("fsc-empty-file", _fsc("empty_map", "noise2"), "empty_map", ()),
    ("fsc-missing-file", _fsc("noise1", "missing"), "missing", ("no such file",)),
    ("fsc-odd-box", _fsc("odd_box", "noise2"), "odd_box", ("even",)),
    ("fsc-nan-map", _fsc("nan_map", "noise2"), "nan_map", ("NaN",)),
    ("fsc-zero-mask", _fsc("noise1", "noise2", "zero_mask"), "zero_mask", ("0.5",)),
    ("fsc-mask-wrong-box", _fsc("noise1", "noise2", "mask_box48"), "mask_box48", ("48 px",)),
    ("post-zero-mask", _postprocess("blob1", "blob2", "zero_mask"), "zero_mask", ()),
    ("post-negative-mask", _postprocess("blob1", "blob2", "negative_mask"), "negative_mask", ()),
    ("post-faint-mask", _postprocess("blob1", "blob2", "faint_mask"), "faint_mask", ()),
    ("post-map-as-mask", _postprocess("blob1", "blob2", "map_as_mask"), "map_as_mask", ("[0, 1]",)),
    (
        "post-mask-wrong-box",
        _postprocess("blob1", "blob2", "mask_box48"),
        "mask_box48",
        ("48 px", "32 px", "blob1"),
    ),
    ("post-mask-wrong-pixel", _postprocess("blob1", "blob2", "mask_pixel3"), "mask_pixel3", ()),
    ("post-half-wrong-box", _postprocess("blob1", "noise_box48", "mask"), "noise_box48", ()),
    ("post-nan-half", _postprocess("nan_map", "blob2", "mask"), "nan_map", ()),
    ("local-window-above-box", _local(window=40), "--window-px", ("40 px", "32 px")),
    ("local-window-too-small", _local(window=4), "--window-px", ()),
    ("local-zero-mask", _local(mask="zero_mask"), "zero_mask", ()),
    ("local-negative-mask", _local(mask="negative_mask"), "negative_mask", ()),
    ("local-mask-wrong-box", _local(mask="mask_box48"), "mask_box48", ("48 px", "32 px")),
    ("local-deformed-wrong-box", _local(("noise_box48", "noise1")), "noise_box48", ()),
    (
        "mask-nothing-above",
        _make_mask("zero_map"),
        "zero_map",
        ("mask_threshold", "maximum"),
    ),
    (
        "mask-threshold-above-max",
        _make_mask("blob1", "--mask-threshold", "1000"),
        "blob1",
        ("1000", "maximum"),
    ),
    ("mask-not-an-mrc", _make_mask("not_a_map"), "not_a_map", ()),
    ("maps-nan-point", _explore_maps("model", "nan,0,0"), "--points", ("finite",)),
    ("maps-absurd-point", _explore_maps("model", "1e30,0,0"), "--points", ("within",)),
    ("maps-csv-as-model", _explore_maps("latents", "0,0,0"), "latents.csv", ()),
    ("movie-nan-point", _explore_movie("model", "0,inf,0"), "--start", ("finite",)),
    ("movie-absurd-point", _explore_movie("model", "0,0,-1e9"), "--start", ("within",)),
    ("movie-csv-as-model", _explore_movie("latents", "0,0,0"), "latents.csv", ()),
    ("atoms-csv-as-model", _pseudo_atoms("latents"), "latents.csv", ()),
    ("atoms-empty-model", _pseudo_atoms("empty_pt"), "empty.pt", ()),
    ("atoms-star-as-model", _pseudo_atoms("star"), "particles.star", ()),
    ("latent-space-csv-as-model", _latent_space("latents"), "latents.csv", ()),
    ("fsc-deformed-mask-wrong-box", _fsc_deformed(mask="mask_box48"), "mask_box48", ()),
    (
        "fsc-deformed-consensus-wrong-box",
        _fsc_deformed(consensus=("noise_box48", "noise1")),
        "noise_box48",
        (),
    ),
    ("fsc-deformed-zero-mask", _fsc_deformed(mask="zero_mask"), "zero_mask", ()),
    ("warmup-csv-as-fit", _with_particles("warmup", "latents"), "latents.csv", ()),
    ("warmup-vae-as-fit", _with_particles("warmup", "model"), "model.pt", ()),
    ("train-vae-csv-as-warmup", _with_particles("train-vae", "latents"), "latents.csv", ()),
    ("split-empty-star", _star_stage("split-halves", "empty_star"), "empty.star", ()),
    ("split-missing-star", _star_stage("split-halves", "missing"), "missing", ()),
    ("reconstruct-empty-star", _star_stage("reconstruct", "empty_star"), "empty.star", ()),
]


@pytest.mark.parametrize(
    ("argv", "culprit", "words"),
    [pytest.param(argv, culprit, words, id=name) for name, argv, culprit, words in ROWS],
)
def test_bad_input_is_one_error_line(
    files: Files,
    argv: Callable[[Files], list[str]],
    culprit: str,
    words: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="dynamight_core"):
        code = main(argv(files))
    captured = capsys.readouterr()
    text = captured.out + captured.err + caplog.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 2, text
    assert "Traceback" not in text
    assert len(errors) == 1, text
    line = errors[0].getMessage()
    assert "\n" not in line
    assert Path(files.get(culprit, culprit)).name in line or culprit in line, line
    for word in words:
        assert word in line, line


# ---- pure noise: no resolution, no gain, and every consumer says so -------------------


def _postprocessed(files: Files, pair: tuple[str, str], label: str) -> dict[str, Any]:
    out = f"{files['out']}_{label}"
    argv = [
        "postprocess", "--half-maps", files[pair[0]], files[pair[1]], "--mask", files["mask"],
        "--label", label, "--out-sharpened", f"{out}.mrc", "--out-tsv", f"{out}.tsv",
        "--out-json", f"{out}.json", "--out-png", f"{out}.png",
    ]  # fmt: skip
    assert main(argv) == 0
    record: dict[str, Any] = json.loads(Path(f"{out}.json").read_text())
    record["sharpened"] = read_volume(f"{out}.mrc").data
    return record


def test_half_maps_with_signal_keep_their_resolution(files: Files) -> None:
    """The control: a blob with a little noise has a resolution and a B-factor."""
    blob = _postprocessed(files, ("blob1", "blob2"), "blob")
    assert blob["has_resolution"] is True
    assert 2 * PIXEL_A <= blob["resolution_0143_a"] < BOX * PIXEL_A / 2
    assert blob["bfactor_a2"] is not None


def test_pure_noise_goes_through_to_a_no_gain_verdict(
    files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dynamight_core"):
        post = {
            label: _postprocessed(files, pair, label)
            for label, pair in (
                ("consensus", ("noise1", "noise2")),
                ("deformed", ("noise3", "noise4")),
                ("null", ("noise5", "noise6")),
            )
        }
    for label, record in post.items():
        assert record["resolution_0143_a"] is None and record["has_resolution"] is False, label
        assert record["bfactor_a2"] is None and record["applied_bfactor_a2"] == 0.0
        assert np.isfinite(record["masked_fsc_area"])
    pair = [read_volume(files[name]).data for name in ("noise1", "noise2")]
    mean = 0.5 * (pair[0] + pair[1]) * read_volume(files["mask"]).data
    np.testing.assert_allclose(post["consensus"]["sharpened"], mean, atol=1e-6)
    assert "no resolution" in caplog.text

    out = f"{files['out']}_noise_local"
    assert main(_local(("noise3", "noise4"))(files | {"out": out})) == 0
    local = json.loads(Path(f"{out}.json").read_text())
    # windows of pure noise cross 0.143 in their first shells by chance: few pass shell 2
    assert max(local["resolved_fraction"].values()) < 0.25

    latent = {f"half{h}": {"explained_variance": [0.6, 0.4]} for h in (1, 2)}
    error = {"median_motion_a": 1.0, "median_error_a": 1.0, "regions": []}
    inputs = ReportInputs(post, local, error, latent, significance_z=0.0)  # any gain counts
    summary = build_summary(inputs, {"pixel_size_a": PIXEL_A, "box_px": BOX})
    gain = summary["gain"]
    assert gain["verdict"].startswith("No resolution / no gain")
    assert gain["significant"] is False and gain["map_better"] is False
    assert gain["motion_real"] is False and gain["resolution_change_a"] is None
    assert any("no resolution" in warning for warning in summary["warnings"])
    text = headline(summary)
    for label in ("consensus", "deformed", "null"):
        assert f"{label:>9}: no resolution" in text and "no B-factor" in text
    page = Page("noise")
    maps_table(page, summary["maps"])
    assert "none" in page.render() and "None" not in page.render()


@pytest.mark.parametrize("missing", ["consensus", "deformed"])
def test_one_pair_without_resolution_is_no_gain(missing: str) -> None:
    """A large FSC-area gain is no claim when either pair of half maps has no resolution."""
    base = {
        "resolution_0143_a": 8.0,
        "unmasked_resolution_0143_a": 9.0,
        "masked_fsc_area_se": 0.001,
        "unmasked_fsc_area": 0.3,
        "bfactor_a2": 100.0,
    }
    post = {
        "consensus": base | {"masked_fsc_area": 0.1, "masked_fsc_area_jackknife": [0.1, 0.11]},
        "deformed": base | {"masked_fsc_area": 0.5, "masked_fsc_area_jackknife": [0.5, 0.52]},
    }
    post[missing] = post[missing] | {"resolution_0143_a": None, "bfactor_a2": None}
    local = {"consensus": {"median_a": 9.0}, "deformed": {"median_a": 8.0}, "finer_fraction": 1}
    latent = {f"half{h}": {"explained_variance": [0.6, 0.4]} for h in (1, 2)}
    error = {"median_motion_a": 3.0, "median_error_a": 1.0, "regions": []}
    inputs = ReportInputs(post, local, error, latent, significance_z=3.0)
    gain = build_summary(inputs, {"pixel_size_a": 2.0, "box_px": 32})["gain"]
    assert gain["over_consensus"]["z"] > 3.0  # the areas alone would claim a gain
    assert gain["significant"] is False and missing in gain["verdict"]
    assert gain["verdict"].startswith("No resolution / no gain")
