"""Warm-up of the Gaussian model against one half set's particle images."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch
from workflow_tools import kill_at_first_checkpoint

from dynamight_core.data.batches import BatchReader
from dynamight_core.data.halves import read_split
from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import read_particles
from dynamight_core.models.gaussians import load_gaussian_model
from dynamight_core.training.likelihood import FourierLikelihood, mean_loss

pytestmark = pytest.mark.slow


def _warmup_command(
    data: Path, results: Path, out: Path, checkpoint: Path | None = None
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "dynamight_core",
        "warmup",
        "--star",
        str(data / "particles.star"),
        "--halves",
        str(results / "halves.csv"),
        "--half",
        "1",
        "--model",
        str(results / "gaussians/consensus_half1.pt"),
        "--epochs",
        "3",
        "--threads",
        "2",
        "--out-model",
        str(out / "warm.pt"),
        "--out-history",
        str(out / "warm.tsv"),
    ]
    if checkpoint:
        command += ["--checkpoint-dir", str(checkpoint)]
    return command


def _same_model(first: Path, second: Path) -> bool:
    a, _ = load_gaussian_model(first)
    b, _ = load_gaussian_model(second)
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("half", [1, 2])
def test_warmup_lowers_held_out_loss(local_run: Path, half: int) -> None:
    """Held-out particles of the same half: the warmed-up model beats the fitted one (with
    its image scale solved), scored independently here with the saved noise model."""
    results = local_run / "results"
    particles = read_particles(results / "simulated/particles.star")
    _, held_out = read_split(results / "halves.csv", particles, half)
    warmed, extra = load_gaussian_model(results / f"gaussians/warmup_half{half}.pt")
    fitted, _ = load_gaussian_model(results / f"gaussians/consensus_half{half}.pt")
    with torch.no_grad():
        fitted.log_masses += math.log(extra["image_scale"])
    likelihood = FourierLikelihood(
        torch.tensor(extra["noise_power"]), warmed.box_px, extra["max_shell"]
    )
    reader = BatchReader(particles, ImageSource(particles), torch.device("cpu"))
    before = mean_loss(fitted, likelihood, reader, held_out, 64)
    after = mean_loss(warmed, likelihood, reader, held_out, 64)
    assert after < before
    assert before == pytest.approx(extra["validation_loss_before"], rel=1e-5)
    history = pd.read_csv(results / f"gaussians/warmup_half{half}.tsv", sep="\t")
    assert history["validation_loss"].iloc[-1] == pytest.approx(after, rel=1e-5)


def test_warmup_never_reads_the_other_half(local_run: Path, tmp_path: Path) -> None:
    results = local_run / "results"
    data = tmp_path / "data"
    shutil.copytree(results / "simulated", data)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    subprocess.run(_warmup_command(data, results, tmp_path / "a"), check=True, capture_output=True)
    halves = pd.read_csv(results / "halves.csv")["half"].to_numpy()
    with mrcfile.open(data / "particles.mrcs", mode="r+") as mrc:
        other = np.flatnonzero(halves == 2)
        mrc.data[other] = (
            np.random.default_rng(0).standard_normal((len(other), 64, 64)).astype(np.float32)
        )
    subprocess.run(_warmup_command(data, results, tmp_path / "b"), check=True, capture_output=True)
    assert _same_model(tmp_path / "a/warm.pt", tmp_path / "b/warm.pt")


def test_killed_warmup_resumes_at_the_next_epoch(local_run: Path, tmp_path: Path) -> None:
    results = local_run / "results"
    data = results / "simulated"
    for name in ("reference", "killed"):
        (tmp_path / name).mkdir()
    subprocess.run(
        _warmup_command(data, results, tmp_path / "reference"), check=True, capture_output=True
    )
    checkpoint = tmp_path / "killed/checkpoint"
    command = _warmup_command(data, results, tmp_path / "killed", checkpoint)
    kill_at_first_checkpoint(command, checkpoint / "warmup.pt")
    assert not (tmp_path / "killed/warm.pt").exists()
    resumed = subprocess.run(command, check=True, capture_output=True, text=True)
    assert "resuming from checkpoint: epoch 2 of 3" in resumed.stderr
    assert _same_model(tmp_path / "reference/warm.pt", tmp_path / "killed/warm.pt")
    assert not checkpoint.exists()


def test_empty_half_set_is_rejected(local_run: Path, tmp_path: Path) -> None:
    results = local_run / "results"
    table = pd.read_csv(results / "halves.csv").assign(half=2)
    table.to_csv(tmp_path / "halves.csv", index=False)
    command = _warmup_command(results / "simulated", results, tmp_path)
    command[command.index("--halves") + 1] = str(tmp_path / "halves.csv")
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert "training particles in half set 1" in result.stderr
