"""The Gaussian model and its fit to consensus maps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from workflow_tools import kill_at_first_checkpoint

from dynamight_core.cli import main
from dynamight_core.errors import InputError
from dynamight_core.io.mrc import Volume, read_volume, write_volume
from dynamight_core.metrics.fsc import masked_fsc
from dynamight_core.models.gaussians import (
    GaussianModel,
    load_gaussian_model,
    save_gaussian_model,
)
from dynamight_core.models.seeding import SeedSettings, default_threshold, seed_model
from dynamight_core.training.fit_map import fit_weight


def _model(n: int = 50) -> GaussianModel:
    g = torch.Generator().manual_seed(0)
    return GaussianModel(
        (torch.rand(n, 3, generator=g) - 0.5) * 30,
        torch.rand(n) + 1,
        torch.tensor([3.0, 4.5]),
        32,
        2.0,
    )


def test_model_round_trip_loads_with_weights_only(tmp_path: Path) -> None:
    model = _model()
    save_gaussian_model(tmp_path / "m.pt", model, {"note": "test"})
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert payload["config"]["n_gaussians"] == 50
    loaded, extra = load_gaussian_model(tmp_path / "m.pt")
    assert extra == {"note": "test"}
    torch.testing.assert_close(loaded.volume(), model.volume())


def test_widths_stay_at_least_one_pixel() -> None:
    model = _model()
    with torch.no_grad():
        model.raw_widths.fill_(-30.0)
    assert (model.widths_a() >= model.pixel_size_a).all()
    with pytest.raises(ValueError, match="exceed one pixel"):
        GaussianModel(torch.zeros(2, 3), torch.ones(2), torch.tensor([1.5]), 32, 2.0)


def _map(tmp_path: Path) -> Volume:
    volume = _model(200).volume().detach().numpy()
    write_volume(tmp_path / "map.mrc", volume, 2.0)
    return read_volume(tmp_path / "map.mrc")


def test_threshold_above_the_map_is_rejected(tmp_path: Path) -> None:
    volume = _map(tmp_path)
    with pytest.raises(InputError) as error:
        seed_model(volume, None, SeedSettings(threshold=float(volume.data.max()) * 2))
    assert "map.mrc: threshold" in str(error.value) and "no voxel exceeds" in str(error.value)


def test_more_gaussians_than_voxels_is_rejected(tmp_path: Path) -> None:
    volume = _map(tmp_path)
    above = int((volume.data > default_threshold(volume.data)).sum())
    with pytest.raises(InputError) as error:
        seed_model(volume, None, SeedSettings(n_gaussians=above + 1))
    assert f"at most {above}" in str(error.value) and f"found {above + 1}" in str(error.value)


def test_mask_of_another_size_is_rejected_by_the_stage(tmp_path: Path) -> None:
    _map(tmp_path)
    write_volume(tmp_path / "mask.mrc", np.ones((24, 24, 24), np.float32), 2.0)
    outputs = [f"--out-{name}" for name in ("model", "quality", "map", "png")]
    arguments = [
        "fit-consensus",
        "--map",
        str(tmp_path / "map.mrc"),
        "--mask",
        str(tmp_path / "mask.mrc"),
    ]
    for flag, suffix in zip(outputs, ("pt", "json", "mrc", "png"), strict=True):
        arguments += [flag, str(tmp_path / f"out.{suffix}")]
    assert main(arguments) == 2
    assert not (tmp_path / "out.pt").exists()


def _fit_is_faithful(
    model: GaussianModel, half_maps: list[Volume], fitted: Volume, threshold: float
) -> float:
    """Lowest corrected masked FSC (model vs map) up to the map's half-map resolution."""
    mask = fit_weight(fitted.data, threshold, None)
    pixel = fitted.voxel_size_a
    resolution = masked_fsc(half_maps[0].data, half_maps[1].data, mask, pixel).corrected
    last = int(fitted.box_px * pixel / resolution.resolution_at(0.143))
    with torch.no_grad():
        rendered = model.volume().numpy()
    curve = masked_fsc(rendered, fitted.data, mask, pixel).corrected.fsc
    return float(curve[1 : last + 1].min())


def _shuffled(model: GaussianModel) -> GaussianModel:
    """Each coordinate axis permuted independently across Gaussians."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        positions = model.positions.clone()
        for axis in range(3):
            order = torch.randperm(model.n_gaussians, generator=generator)
            model.positions[:, axis] = positions[order, axis]
    return model


def _check_fit(folder: Path, model_path: Path, quality_path: Path) -> None:
    half_maps = [read_volume(folder / f"half{h}.mrc") for h in (1, 2)]
    model, extra = load_gaussian_model(model_path)
    quality = json.loads(quality_path.read_text())
    lowest = _fit_is_faithful(model, half_maps, half_maps[0], extra["threshold"])
    assert lowest >= 0.9
    assert quality["min_fsc_to_map_resolution"] == pytest.approx(lowest, abs=1e-3)
    assert quality["correlation_in_mask"] > 0.99
    assert _fit_is_faithful(_shuffled(model), half_maps, half_maps[0], extra["threshold"]) < 0.5


@pytest.mark.slow
def test_fit_reproduces_box64_demo_map(local_run: Path) -> None:
    """The workflow's fit of half map 1 (box 64, 2 Å/px, SNR 0.1, 2,000 particles)."""
    results = local_run / "results"
    _check_fit(
        results / "consensus",
        results / "gaussians/consensus_half1.pt",
        results / "gaussians/fit_quality_half1.json",
    )


@pytest.mark.slow
def test_fit_reproduces_box128_demo_map(tmp_path: Path) -> None:
    """Box 128 at 1 Å/px (1,000 particles, SNR 0.1): simulate, reconstruct, fit."""

    def stage(*arguments: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "dynamight_core", *arguments],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    stage(
        "simulate",
        "--out",
        "data",
        "--n-particles",
        "1000",
        "--box-px",
        "128",
        "--pixel-size-a",
        "1.0",
        "--snr",
        "0.1",
        "--seed",
        "5",
    )
    stage("split-halves", "--star", "data/particles.star", "--out", "halves.csv")
    stage(
        "reconstruct",
        "--star",
        "data/particles.star",
        "--halves",
        "halves.csv",
        "--out-half1",
        "half1.mrc",
        "--out-half2",
        "half2.mrc",
        "--out-full",
        "full.mrc",
    )
    stage(
        "fit-consensus",
        "--map",
        "half1.mrc",
        "--half-maps",
        "half1.mrc",
        "half2.mrc",
        "--out-model",
        "model.pt",
        "--out-quality",
        "quality.json",
        "--out-map",
        "model.mrc",
        "--out-png",
        "quality.png",
    )
    _check_fit(tmp_path, tmp_path / "model.pt", tmp_path / "quality.json")


@pytest.mark.slow
def test_killed_fit_resumes_with_identical_model(local_run: Path, tmp_path: Path) -> None:
    def command(tag: str, checkpoint: Path | None = None) -> list[str]:
        arguments = [
            sys.executable,
            "-m",
            "dynamight_core",
            "fit-consensus",
            "--map",
            str(local_run / "results/consensus/half1.mrc"),
            "--iterations",
            "250",
            "--threads",
            "2",
        ]
        for flag, suffix in (("model", "pt"), ("quality", "json"), ("map", "mrc"), ("png", "png")):
            arguments += [f"--out-{flag}", str(tmp_path / f"{tag}.{suffix}")]
        return arguments + (["--checkpoint-dir", str(checkpoint)] if checkpoint else [])

    subprocess.run(command("reference"), check=True, capture_output=True)
    checkpoint = tmp_path / "checkpoint"
    kill_at_first_checkpoint(command("killed", checkpoint), checkpoint / "fit.pt")
    resumed = subprocess.run(
        command("killed", checkpoint), check=True, capture_output=True, text=True
    )
    assert "resuming from checkpoint: step 101 of 250" in resumed.stderr
    reference, _ = load_gaussian_model(tmp_path / "reference.pt")
    killed, _ = load_gaussian_model(tmp_path / "killed.pt")
    for a, b in zip(reference.state_dict().values(), killed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_fit_reports_a_map_whose_half_maps_never_reach_0143(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Half map 2 is pure noise: the map's resolution is worse than the lowest shell.

    The fit still runs, compares model and map at the lowest shell, writes ``null`` as
    the map's resolution and warns, instead of failing on an empty range of shells.
    """
    volume = _map(tmp_path)
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((2, *volume.data.shape)).astype(np.float32) * volume.data.std()
    write_volume(tmp_path / "half1.mrc", volume.data + 0.1 * noise[0], 2.0)
    write_volume(tmp_path / "half2.mrc", noise[1], 2.0)
    arguments = ["fit-consensus", "--map", str(tmp_path / "map.mrc"), "--iterations", "20"]
    arguments += ["--half-maps", str(tmp_path / "half1.mrc"), str(tmp_path / "half2.mrc")]
    outputs = ("model", "quality", "map", "png")
    for flag, suffix in zip(outputs, ("pt", "json", "mrc", "png"), strict=True):
        arguments += [f"--out-{flag}", str(tmp_path / f"out.{suffix}")]
    with caplog.at_level("WARNING"):
        assert main(arguments) == 0
    quality = json.loads((tmp_path / "out.json").read_text())
    assert quality["map_resolution_0143_a"] is None
    lowest_shell = quality["masked_corrected"]["fsc"][1]
    assert quality["min_fsc_to_map_resolution"] == pytest.approx(lowest_shell, abs=1e-5)
    assert "worse than 64.0 Å" in caplog.text
