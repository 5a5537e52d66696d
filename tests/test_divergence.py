"""A training loop whose loss turns NaN or infinite stops with exit code 3, writing nothing.

Each loop (consensus fit, warm-up, VAE) is driven into divergence by a learning rate far
too large; each must stop at the first non-finite loss, name the stage, the step and the
settings to lower, and leave no model, latents or checkpoint behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_gaussians import _model
from test_resume_vae import make_half_set

from dynamight_core.cli import EXIT_DIVERGED, main
from dynamight_core.errors import TrainingDivergedError
from dynamight_core.training.fit_map import FitSettings, fit_model_to_map


@pytest.fixture(scope="module")
def half_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated half set with a model of its true pseudo-atoms."""
    return make_half_set(tmp_path_factory.mktemp("divergence"), n_particles=200)


def _half_set_arguments(folder: Path, stage: str, model: Path) -> list[str]:
    return [
        stage,
        "--star",
        str(folder / "particles.star"),
        "--halves",
        str(folder / "halves.csv"),
        "--half",
        "1",
        "--model",
        str(model),
        "--threads",
        "2",
    ]


def test_map_fit_stops_at_a_non_finite_loss(tmp_path: Path) -> None:
    target = _model(200).volume().detach()
    model = _model(150)
    with pytest.raises(TrainingDivergedError) as error:
        fit_model_to_map(model, target, torch.ones_like(target), FitSettings(30, log_step=1e3))
    message = str(error.value)
    assert message.startswith("fit-consensus: the loss of the fit became nan at step ")
    assert "no output was written" in message and "log_step" in message


def _warmup_arguments(folder: Path, out: Path, *settings: str) -> list[str]:
    arguments = _half_set_arguments(folder, "warmup", folder / "truth_model.pt")
    arguments += ["--epochs", "1", "--checkpoint-dir", str(out / "checkpoint"), *settings]
    return [*arguments, "--out-model", str(out / "warm.pt"), "--out-history", str(out / "w.tsv")]


def test_warmup_stops_at_a_non_finite_loss(
    half_set: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    arguments = _warmup_arguments(half_set, tmp_path, "--lr-shape", "1e4")
    assert main(arguments) == EXIT_DIVERGED
    assert "warmup: the training loss became nan at epoch 1, step " in caplog.text
    assert "warmup.lr_shape" in caplog.text
    assert not (tmp_path / "warm.pt").exists() and not (tmp_path / "w.tsv").exists()
    assert not (tmp_path / "checkpoint/warmup.pt").exists()


def test_vae_stops_at_a_non_finite_loss(
    half_set: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(_warmup_arguments(half_set, tmp_path / "warm")) == 0
    arguments = _half_set_arguments(half_set, "train-vae", tmp_path / "warm/warm.pt")
    arguments += ["--lr", "1e4", "--max-epochs", "2", "--refine-steps", "1"]
    arguments += ["--max-resolution-a", "8", "--checkpoint-dir", str(tmp_path / "checkpoint")]
    for flag, name in (("model", "model.pt"), ("latents", "latents.csv")):
        arguments += [f"--out-{flag}", str(tmp_path / name)]
    arguments += ["--out-history", str(tmp_path / "t.tsv"), "--out-png", str(tmp_path / "t.png")]
    assert main(arguments) == EXIT_DIVERGED
    assert "train-vae: the training loss became nan at epoch 1, step " in caplog.text
    assert "vae.lr" in caplog.text
    written = ("model.pt", "latents.csv", "t.tsv", "t.png")
    assert not any((tmp_path / name).exists() for name in written)
    assert not (tmp_path / "checkpoint/vae.pt").exists()
