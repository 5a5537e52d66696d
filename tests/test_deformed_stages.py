"""The deformed-map stages on the demo's trained half sets: gain, independence, shards, resume.

The demo workflow (fixture ``local_run``) ends with the deformed half maps; the stage tests
run the commands a workflow job runs on the first 400 particles of the demo, so that each
takes seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from workflow_tools import kill_at_first_checkpoint

SUBSET = 400


def test_demo_deformed_maps_beat_the_consensus(local_run: Path) -> None:
    """Against the simulation's mid state and between the halves, the deformed maps win."""
    summary = json.loads((local_run / "results/deformed/fsc.json").read_text())
    deformed, consensus = summary["deformed"], summary["consensus"]
    assert deformed["full_vs_state_area"] > consensus["full_vs_state_area"] + 0.01
    assert deformed["fsc_area"] > consensus["fsc_area"]
    assert deformed["resolution_0143_a"] < consensus["resolution_0143_a"]
    with mrcfile.open(local_run / "results/deformed/full.mrc") as mrc:
        assert np.isclose(float(mrc.voxel_size.x), 1.8, rtol=1e-5)
    text = (local_run / "results/deformed/summary.txt").read_text()
    assert "deformed" in text and "consensus" in text


@pytest.fixture(scope="module")
def subset(local_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's first particles: STAR, stack, split and each half's latents."""
    results = local_run / "results"
    folder = tmp_path_factory.mktemp("deformed_subset")
    shutil.copy(results / "simulated/particles.mrcs", folder / "particles.mrcs")
    blocks = starfile.read(results / "simulated/particles.star", always_dict=True)
    blocks["particles"] = blocks["particles"].head(SUBSET)
    starfile.write(blocks, folder / "particles.star")
    halves = pd.read_csv(results / "halves.csv")
    halves.head(SUBSET).to_csv(folder / "halves.csv", index=False)
    for half in (1, 2):
        latents = pd.read_csv(results / f"vae/half{half}/latents.csv")
        latents[latents["row"] < SUBSET].to_csv(folder / f"latents{half}.csv", index=False)
    return folder


def _inputs(data: Path, results: Path, half: int, star: Path | None = None) -> list[str]:
    return [
        "--star",
        str(star or data / "particles.star"),
        "--halves",
        str(data / "halves.csv"),
        "--half",
        str(half),
        "--model",
        str(results / f"vae/half{half}/model.pt"),
        "--latents",
        str(data / f"latents{half}.csv"),
        "--consensus-fit",
        str(results / f"gaussians/warmup_half{half}.pt"),
        "--threads",
        "2",
    ]


def _backproject(
    data: Path, results: Path, out: Path, *extra: str, star: Path | None = None
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dynamight_core",
        "backproject-deformed",
        *_inputs(data, results, 1, star),
        "--out-sums",
        str(out),
        *extra,
    ]


def _solve(
    data: Path, results: Path, sums: list[Path], out: Path, *extra: str, star: Path | None = None
) -> None:
    command = [
        sys.executable,
        "-m",
        "dynamight_core",
        "solve-deformed",
        *_inputs(data, results, 1, star),
    ]
    command += ["--sums", *map(str, sums), "--out-map", str(out)]
    command += [
        "--out-history",
        str(out.with_suffix(".tsv")),
        "--out-iterations",
        str(out.with_suffix(".pt")),
    ]
    subprocess.run([*command, *extra], check=True, capture_output=True)


def _map(path: Path) -> np.ndarray:
    with mrcfile.open(path) as mrc:
        return mrc.data.copy()


def test_half_one_never_sees_half_two(local_run: Path, subset: Path, tmp_path: Path) -> None:
    """Half 2's images replaced by noise: half 1's deformed map is bit-identical."""
    results = local_run / "results"
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    for name in ("particles.star", "halves.csv", "latents1.csv", "latents2.csv"):
        shutil.copy(subset / name, noisy / name)
    shutil.copy(subset / "particles.mrcs", noisy / "particles.mrcs")
    other = np.flatnonzero(pd.read_csv(subset / "halves.csv")["half"].to_numpy() == 2)
    with mrcfile.open(noisy / "particles.mrcs", mode="r+") as mrc:
        noise = np.random.default_rng(0).standard_normal((len(other), *mrc.data.shape[1:]))
        mrc.data[other] = noise.astype(np.float32)
    maps = []
    for data in (subset, noisy):
        sums = tmp_path / f"{data.name}.pt"
        subprocess.run(_backproject(data, results, sums), check=True, capture_output=True)
        _solve(data, results, [sums], tmp_path / f"{data.name}.mrc", "--iterations", "1")
        maps.append(_map(tmp_path / f"{data.name}.mrc"))
    np.testing.assert_array_equal(maps[0], maps[1])


def test_shards_add_up_to_the_unsharded_map(local_run: Path, subset: Path, tmp_path: Path) -> None:
    results = local_run / "results"
    whole = tmp_path / "whole.pt"
    subprocess.run(_backproject(subset, results, whole), check=True, capture_output=True)
    shards = [tmp_path / f"shard{k}.pt" for k in (1, 2, 3)]
    for number, path in enumerate(shards, start=1):
        command = _backproject(subset, results, path, "--shards", "3", "--shard", str(number))
        subprocess.run(command, check=True, capture_output=True)
    _solve(subset, results, [whole], tmp_path / "whole.mrc")
    _solve(subset, results, shards, tmp_path / "sharded.mrc")
    reference = _map(tmp_path / "whole.mrc")
    sharded = _map(tmp_path / "sharded.mrc")
    assert np.abs(sharded - reference).max() < 1e-4 * np.abs(reference).max()
    command = [sys.executable, "-m", "dynamight_core", "solve-deformed"]
    command += [*_inputs(subset, results, 1), "--sums", str(shards[0]), str(shards[1])]
    command += ["--out-map", str(tmp_path / "x.mrc"), "--out-history", str(tmp_path / "x.tsv")]
    command += ["--out-iterations", str(tmp_path / "x.pt")]
    incomplete = subprocess.run(command, capture_output=True, text=True)
    assert incomplete.returncode == 2
    assert "Pass every shard of this half set" in incomplete.stderr
    assert not (tmp_path / "x.mrc").exists()


def test_killed_backprojection_resumes_with_identical_sums(
    local_run: Path, subset: Path, tmp_path: Path
) -> None:
    results = local_run / "results"
    settings = ("--batch-size", "8", "--checkpoint-every", "2")
    reference = tmp_path / "reference.pt"
    subprocess.run(
        _backproject(subset, results, reference, *settings), check=True, capture_output=True
    )
    checkpoint = tmp_path / "checkpoint"
    resumed = tmp_path / "resumed.pt"
    command = _backproject(subset, results, resumed, *settings, "--checkpoint-dir", str(checkpoint))
    kill_at_first_checkpoint(command, checkpoint / "running.pt")
    assert not resumed.exists()
    finished = subprocess.run(command, check=True, capture_output=True, text=True)
    assert "resuming from checkpoint at batch 2" in finished.stderr
    first = torch.load(reference, weights_only=True)["sums"]
    second = torch.load(resumed, weights_only=True)["sums"]
    for key in ("numerators", "transfers", "rigid", "rows"):
        assert torch.equal(first[key], second[key]), key
    assert not checkpoint.exists()


def test_inverse_network_inverts_the_forward_field(
    local_run: Path, subset: Path, tmp_path: Path
) -> None:
    """fit-inverse on half 1: held-out inversion error well below the motion; usable by the
    reconstruction (method inverse), whose map agrees with the adjoint method's at low
    resolution."""
    results = local_run / "results"
    out = tmp_path / "inverse.pt"
    command = [sys.executable, "-m", "dynamight_core", "fit-inverse"]
    command += ["--model", str(results / "vae/half1/model.pt")]
    command += ["--latents", str(results / "vae/half1/latents.csv"), "--epochs", "5"]
    command += ["--points", "300", "--batch-size", "64"]
    command += ["--out-model", str(out), "--out-json", str(tmp_path / "inverse.json")]
    subprocess.run([*command, "--threads", "2"], check=True, capture_output=True)
    errors = json.loads((tmp_path / "inverse.json").read_text())["errors"]
    assert errors["inverse_rms_a"] < 0.5 * errors["displacement_rms_a"], errors
    maps = []
    for method in ("adjoint", "inverse"):
        extra = ("--method", method, "--inverse-model", str(out))
        sums = tmp_path / f"sums_{method}.pt"
        subprocess.run(_backproject(subset, results, sums, *extra), check=True, capture_output=True)
        _solve(subset, results, [sums], tmp_path / f"{method}.mrc", *extra)
        maps.append(_map(tmp_path / f"{method}.mrc"))
    from dynamight_core.metrics.fsc import fsc

    curve = fsc(maps[0], maps[1], 1.8).fsc
    assert curve[1:6].min() > 0.9


def test_both_half_maps_are_in_one_recorded_reference_state(local_run: Path) -> None:
    """The half maps' reference states (deformed.reference mean) are written beside the maps;
    registered onto each other, the two half maps are within a fifth of a voxel of the
    consensus half maps' floor, as fsc-deformed and the report say."""
    results = local_run / "results"
    record = json.loads((results / "deformed/fsc.json").read_text())["reference_states"]
    assert record["reference"] == "mean"
    floor = record["consensus_disagreement"]["rms_a"]
    assert record["disagreement"]["rms_a"] < floor + 0.2 * 1.8, record
    for half in (1, 2):
        state = torch.load(results / f"deformed/half{half}/reference_state.pt", weights_only=True)
        assert state["half"] == half and state["reference"] == "mean"
        assert torch.equal(state["reference_a"], state["mean_a"])
    summary = json.loads((results / "summary.json").read_text())
    assert summary["reference_state"]["disagreement_rms_a"] == record["disagreement"]["rms_a"]


def _align(results: Path, out: Path, models: tuple[int, int] = (1, 2)) -> dict[str, object]:
    command = [sys.executable, "-m", "dynamight_core", "align-halves", "--models"]
    command += [str(results / f"vae/half{h}/model.pt") for h in models]
    command += ["--latents", *(str(results / f"vae/half{h}/latents.csv") for h in models)]
    result = subprocess.run([*command, "--out-json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0 or models != (1, 2), result.stderr
    return json.loads(out.read_text()) if result.returncode == 0 else {"stderr": result.stderr}


def test_aligned_pc1_names_one_end_of_the_motion_in_both_halves(
    local_run: Path, tmp_path: Path
) -> None:
    """After align-halves, PC1 scores (half 2's times the sign) rise with the simulation's
    true hinge coordinate in both halves, or fall in both."""
    from dynamight_core.data.latent_space import latent_pca
    from dynamight_core.data.latents import read_latent_means
    from dynamight_core.simulate.truth import load_truth

    results = local_run / "results"
    alignment = _align(results, tmp_path / "alignment.json")
    assert alignment["aligned"] and alignment["correlation"] > 0.5
    truth = load_truth(results / "simulated")
    correlations = []
    for half in (1, 2):
        table, means = read_latent_means(results / f"vae/half{half}/latents.csv")
        sign = alignment["sign"] if half == 2 else 1
        scores = sign * latent_pca(means).scores[:, 0]
        coordinates = truth.coordinates[table["row"].to_numpy()]
        correlations.append(float(np.corrcoef(scores, coordinates)[0, 1]))
    assert min(abs(c) for c in correlations) > 0.5, correlations
    assert correlations[0] * correlations[1] > 0, correlations
    swapped = _align(results, tmp_path / "swapped.json", (2, 1))
    assert "half" in str(swapped.get("stderr")), swapped


def test_state_maps_put_both_halves_in_the_same_state(
    local_run: Path, subset: Path, tmp_path: Path
) -> None:
    """state-maps at both ends of the aligned PC1: each half's map of a state is closer in
    conformation to the other half's map of the same state than to its map of the other end;
    fsc-states writes a full map, an FSC and the conformations' distance per state; an
    alignment of other models is refused."""
    from dynamight_core.metrics.registration import conformation_difference

    results = local_run / "results"
    alignment = tmp_path / "alignment.json"
    _align(results, alignment)
    records = []
    for half in (1, 2):
        out = tmp_path / f"half{half}"
        command = [sys.executable, "-m", "dynamight_core", "state-maps"]
        command += _inputs(subset, results, half)
        command += ["--alignment", str(alignment), "--state-percentiles", "10,90"]
        command += ["--out-dir", str(out), "--out-json", str(out / "states.json")]
        subprocess.run(command, check=True, capture_output=True)
        records.append(out / "states.json")

    mask = _map(results / "postprocess/mask.mrc")

    def apart(first: int, second: int) -> float:
        one, two = (
            _map(tmp_path / f"half{h}" / f"state_{s:02d}.mrc") for h, s in ((1, first), (2, second))
        )
        return conformation_difference(one, two, mask, 1.8).rms_a

    # measured on the demo's 400 particles: 1.8 and 1.2 Å for the same state, 3.2 and 3.4 Å
    # across the ends; with the halves' PC1 not aligned the two would swap
    assert max(apart(0, 0), apart(1, 1)) < 0.75 * min(apart(0, 1), apart(1, 0))
    command = [sys.executable, "-m", "dynamight_core", "fsc-states", "--states", *map(str, records)]
    command += ["--mask", str(results / "postprocess/mask.mrc")]
    command += ["--out-dir", str(tmp_path / "states"), "--out-json", str(tmp_path / "fsc.json")]
    subprocess.run([*command, "--out-summary", str(tmp_path / "summary.txt")], check=True)
    states = json.loads((tmp_path / "fsc.json").read_text())["states"]
    assert [s["percentile"] for s in states] == [10.0, 90.0]
    for state in states:
        assert np.isfinite(_map(tmp_path / "states" / state["map"])).all()
        assert 0.0 < state["fsc_area"] <= 1.0
        assert state["agreement"]["rms_a"] < min(apart(0, 1), apart(1, 0))
    other = tmp_path / "other.json"
    record = json.loads(alignment.read_text())
    record["models_sha256"] = record["models_sha256"][::-1]
    other.write_text(json.dumps(record))
    command = [sys.executable, "-m", "dynamight_core", "state-maps", *_inputs(subset, results, 1)]
    command += ["--alignment", str(other), "--state-percentiles", "10"]
    command += ["--out-dir", str(tmp_path / "x"), "--out-json", str(tmp_path / "x.json")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2 and "models_sha256" in result.stderr, result.stderr


def test_the_other_halfs_consensus_fit_is_refused(
    local_run: Path, subset: Path, tmp_path: Path
) -> None:
    results = local_run / "results"
    command = _backproject(subset, results, tmp_path / "sums.pt")
    where = command.index("--consensus-fit") + 1
    command[where] = str(results / "gaussians/warmup_half2.pt")
    failed = subprocess.run(command, capture_output=True, text=True)
    assert failed.returncode == 2, failed.stderr
    assert "warmup_half2.pt" in failed.stderr and "half" in failed.stderr
