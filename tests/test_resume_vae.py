"""``train-vae`` killed with SIGKILL resumes bit-identically; one copy per checkpoint folder.

A small simulated half set (300 particles, a hinge) with a model made from the simulation's
own pseudo-atoms and warmed up for one epoch; the VAE trains for four epochs with the
consensus positions learning and a consensus update after epoch 2, so a run killed after
epoch 1 has to restore everything that changes between epochs to finish identically.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from workflow_tools import kill_at_first_checkpoint, train_vae_command

from dynamight_core.cli import main
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.models.deformation import load_deformation_model
from dynamight_core.models.gaussians import GaussianModel, save_gaussian_model
from dynamight_core.simulate.dataset import SimulationConfig, simulate_dataset

SETTINGS = (
    "--max-epochs",
    "4",
    "--consensus-update-every",
    "2",
    "--batch-size",
    "16",
    "--refine-steps",
    "2",
    "--track-steps",
    "1",
    "--max-resolution-a",
    "8",
    "--threads",
    "2",
)


def make_half_set(folder: Path, n_particles: int = 300) -> Path:
    """Simulated particles, their half sets and a Gaussian model of the true pseudo-atoms.

    Writes ``particles.star``, ``halves.csv`` (20% held out) and ``truth_model.pt`` (one
    3.2 Å width class, masses as simulated) in ``folder``, and returns ``folder``.
    """
    config = SimulationConfig(n_particles=n_particles, pixel_size_a=2.0, snr=0.5, seed=7)
    simulate_dataset(config, folder)
    atoms = pd.read_csv(folder / "truth/atoms.csv")
    model = GaussianModel(
        torch.tensor(atoms[["x_a", "y_a", "z_a"]].to_numpy()),
        torch.tensor(atoms["mass"].to_numpy()),
        torch.tensor([3.2]),
        64,
        2.0,
    )
    save_gaussian_model(folder / "truth_model.pt", model, {})
    star, halves = str(folder / "particles.star"), str(folder / "halves.csv")
    arguments = ["split-halves", "--star", star, "--out", halves, "--validation-fraction", "0.2"]
    assert main(arguments) == 0
    return folder


@pytest.fixture(scope="module")
def half_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`make_half_set` plus ``warm.pt``: half set 1's model warmed up for one epoch."""
    folder = make_half_set(tmp_path_factory.mktemp("vae_resume"))
    arguments = ["warmup", "--star", str(folder / "particles.star")]
    arguments += ["--halves", str(folder / "halves.csv"), "--half", "1", "--epochs", "1"]
    arguments += ["--model", str(folder / "truth_model.pt"), "--threads", "2"]
    arguments += ["--out-model", str(folder / "warm.pt"), "--out-history", str(folder / "w.tsv")]
    assert main(arguments) == 0
    return folder


def _command(data: Path, out: Path, checkpoint: Path | None = None) -> list[str]:
    return train_vae_command(
        data / "particles.star",
        data / "halves.csv",
        data / "warm.pt",
        out,
        *SETTINGS,
        checkpoint=checkpoint,
    )


@pytest.fixture(scope="module")
def uninterrupted(half_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outputs of a run without checkpoints."""
    out = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(_command(half_set, out), check=True, capture_output=True)
    return out


def _assert_identical(first: Path, second: Path) -> None:
    a, _ = load_deformation_model(first / "model.pt")
    b, _ = load_deformation_model(second / "model.pt")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), f"{name} differs by up to {float((x - y).abs().max()):.3g}"
    assert (first / "latents.csv").read_text() == (second / "latents.csv").read_text()
    assert (first / "training.tsv").read_text() == (second / "training.tsv").read_text()


def test_uninterrupted_run_learns_and_updates_the_consensus(
    uninterrupted: Path, half_set: Path
) -> None:
    """The setting the resume tests rely on: positions move and the consensus is updated."""
    history = pd.read_csv(uninterrupted / "training.tsv", sep="\t")
    assert len(history) == 4
    assert (history["consensus_shift_a"].to_numpy()[[1, 3]] > 0).all()
    trained, _ = load_deformation_model(uninterrupted / "model.pt")
    warm = torch.load(half_set / "warm.pt", weights_only=True)["state_dict"]["positions"]
    assert not torch.equal(trained.consensus.positions.detach(), warm)


def test_sigkilled_training_resumes_bit_identically(
    half_set: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    command = _command(half_set, tmp_path, checkpoint)
    kill_at_first_checkpoint(command, checkpoint / "vae.pt")
    assert not (tmp_path / "model.pt").exists()
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoint: epoch 2" in resumed.stderr
    _assert_identical(uninterrupted, tmp_path)
    assert not checkpoint.exists()


def test_truncated_checkpoint_is_set_aside_and_training_starts_afresh(
    half_set: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "checkpoint"
    command = _command(half_set, tmp_path, checkpoint)
    kill_at_first_checkpoint(command, checkpoint / "vae.pt")
    saved = (checkpoint / "vae.pt").read_bytes()
    (checkpoint / "vae.pt").write_bytes(saved[: len(saved) // 3])
    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "unreadable" in rerun.stderr and "vae.pt.corrupt-" in rerun.stderr
    assert "resuming from checkpoint" not in rerun.stderr
    _assert_identical(uninterrupted, tmp_path)


def test_second_copy_stops_at_once_naming_the_holder(half_set: Path, tmp_path: Path) -> None:
    """An orphaned job still holds the folder: the new copy exits 2, writes nothing."""
    checkpoint = tmp_path / "checkpoint"
    orphan = Checkpointer(checkpoint, "train-vae", {})
    second = subprocess.run(
        _command(half_set, tmp_path, checkpoint), capture_output=True, text=True
    )
    orphan.release()
    assert second.returncode == 2, second.stderr[-3000:]
    assert str(checkpoint) in second.stderr
    assert f"host {socket.gethostname()}, PID {os.getpid()}" in second.stderr
    assert "epoch 1" not in second.stderr
    assert not (tmp_path / "model.pt").exists()


def test_out_of_memory_halves_the_batch_and_continues_from_the_last_epoch(
    half_set: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    """A step that runs out of memory in epoch 2 (forced by the test hook): the batch is
    halved, epoch 2 runs again from the end of epoch 1, and the model is still written."""
    checkpoint = tmp_path / "checkpoint"
    steps_per_epoch = len(pd.read_csv(uninterrupted / "latents.csv").query("validation == 0"))
    steps_per_epoch = -(-steps_per_epoch // 16)
    environment = {**os.environ, "DYNAMIGHT_FORCE_OOM_AT_STEP": str(steps_per_epoch + 2)}
    run = subprocess.run(
        _command(half_set, tmp_path, checkpoint), capture_output=True, text=True, env=environment
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "out of memory at vae.batch_size 16" in run.stderr
    assert "halving it to 8" in run.stderr
    history = pd.read_csv(tmp_path / "training.tsv", sep="\t")
    before = pd.read_csv(uninterrupted / "training.tsv", sep="\t")
    assert list(history["epoch"]) == [1, 2, 3, 4]
    pd.testing.assert_series_equal(history.iloc[0], before.iloc[0])  # epoch 1 kept as it was
    assert history["data"].iloc[1] != before["data"].iloc[1]  # epoch 2 again, in smaller steps
    extra = torch.load(tmp_path / "model.pt", weights_only=True)["extra"]
    assert extra["batch_size"] == 8
    assert not checkpoint.exists()


def test_out_of_memory_in_the_warm_up_halves_its_batch(half_set: Path, tmp_path: Path) -> None:
    """The warm-up recovers the same way: its second step fails, the epoch runs again."""
    arguments = [sys.executable, "-m", "dynamight_core", "warmup", "--half", "1"]
    arguments += ["--star", str(half_set / "particles.star"), "--halves"]
    arguments += [str(half_set / "halves.csv"), "--model", str(half_set / "truth_model.pt")]
    arguments += ["--epochs", "2", "--batch-size", "32", "--threads", "2"]
    arguments += ["--out-model", str(tmp_path / "warm.pt"), "--out-history"]
    arguments += [str(tmp_path / "warm.tsv")]
    environment = {**os.environ, "DYNAMIGHT_FORCE_OOM_AT_STEP": "2"}
    run = subprocess.run(arguments, capture_output=True, text=True, env=environment)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "out of memory at warmup.batch_size 32" in run.stderr
    assert "halving it to 16" in run.stderr
    assert list(pd.read_csv(tmp_path / "warm.tsv", sep="\t")["epoch"]) == [1, 2]
