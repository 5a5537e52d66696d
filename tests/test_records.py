"""The trained half-set VAE record and the resumable-loop checkpoint: what goes in comes out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_vae_parts import _model

from dynamight_core.errors import InputError
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.models.deformation import save_deformation_model
from dynamight_core.training.epochs import ResumableLoop
from dynamight_core.training.half_set_vae import (
    HalfSetVae,
    Refinement,
    TrainingGrid,
    load_half_set_vae,
    save_half_set_vae,
)
from dynamight_core.training.likelihood import FourierLikelihood


def _vae() -> HalfSetVae:
    grid = TrainingGrid(box_px=16, pixel_size_a=4.0, max_shell=7, encoder_px=16)
    noise = torch.linspace(2.0, 0.5, grid.box_px // 2 + 1)
    return HalfSetVae(
        model=_model(),
        grid=grid,
        likelihood=FourierLikelihood(noise, grid.box_px, grid.max_shell),
        refinement=Refinement(steps=4, lr=0.05, prior_weight=0.01, tracking_steps=2),
        batch_size=17,
        half=2,
        history=[{"epoch": 1.0, "validation": 0.9}],
        stopped="reached max_epochs (1)",
    )


def test_half_set_vae_round_trip(tmp_path: Path) -> None:
    vae = _vae()
    save_half_set_vae(tmp_path / "model.pt", vae, {"lr": 1e-3})
    loaded = load_half_set_vae(tmp_path / "model.pt")
    assert loaded.grid == vae.grid
    assert loaded.refinement == vae.refinement
    assert (loaded.batch_size, loaded.half) == (17, 2)
    assert loaded.history == vae.history and loaded.stopped == vae.stopped
    assert torch.equal(loaded.likelihood.weights, vae.likelihood.weights)
    z = torch.randn(3, 2)
    torch.testing.assert_close(
        loaded.model.deformed_positions_a(z), vae.model.deformed_positions_a(z)
    )


def test_a_bare_model_file_is_not_a_trained_vae(tmp_path: Path) -> None:
    save_deformation_model(tmp_path / "bare.pt", _model(), {"half": 1})
    with pytest.raises(InputError, match="trained half-set VAE"):
        load_half_set_vae(tmp_path / "bare.pt")


def _step(model: torch.nn.Linear, optimizer: torch.optim.Optimizer) -> None:
    optimizer.zero_grad()
    (model(torch.randn(4, 3)) ** 2).sum().backward()
    optimizer.step()


def test_resumed_loop_continues_bit_for_bit(tmp_path: Path) -> None:
    """Saving after step 2 and resuming gives the model of 4 uninterrupted steps."""

    def fresh() -> tuple[torch.nn.Linear, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        return model, torch.optim.Adam(model.parameters(), lr=0.1)

    model, optimizer = fresh()
    for _ in range(4):
        _step(model, optimizer)
    uninterrupted = model.weight.detach().clone()

    model, optimizer = fresh()
    loop = ResumableLoop(Checkpointer(tmp_path, "test", {}), "loop", model, optimizer)
    assert loop.resume() is None
    for _ in range(2):
        _step(model, optimizer)
    loop.save({"step": 2})
    assert loop.checkpointer is not None
    loop.checkpointer.release()

    model, optimizer = fresh()
    loop = ResumableLoop(Checkpointer(tmp_path, "test", {}), "loop", model, optimizer)
    saved = loop.resume()
    assert saved == {"step": 2}
    for _ in range(2):
        _step(model, optimizer)
    assert torch.equal(model.weight, uninterrupted)
