"""The displacement decoders (``vae.decoder``): what each holds, their files; the stopping rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dynamight_core.models.basis_decoder import BasisDecoder
from dynamight_core.models.decoders import (
    DecoderShape,
    build_decoder,
    decoder_from_description,
    decoder_kind,
    describe_decoder,
)
from dynamight_core.models.deformation import (
    DeformationModel,
    VaeArchitecture,
    build_deformation_model,
    load_deformation_model,
    save_deformation_model,
)
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.models.inverse import (
    build_inverse,
    describe_inverse,
    load_inverse,
    save_inverse,
)
from dynamight_core.training.stopping import StoppingRule, latent_change

BOX = 32


def _consensus(n: int = 200, seed: int = 0) -> GaussianModel:
    g = torch.Generator().manual_seed(seed)
    positions = (torch.rand(n, 3, generator=g) - 0.5) * 0.5
    return GaussianModel(positions, torch.rand(n, generator=g) + 0.5, torch.tensor([3.0]), BOX, 2.0)


@pytest.mark.parametrize("kind", ["mlp", "basis"])
def test_every_decoder_starts_at_the_consensus(kind: str) -> None:
    decoder = build_decoder(DecoderShape(kind, latent_dim=4, box_px=BOX))
    z = torch.randn(5, 4)
    positions = torch.rand(30, 3) - 0.5
    assert torch.count_nonzero(decoder(z, positions)) == 0
    assert decoder(z, positions).shape == (5, 30, 3)


def test_basis_decoder_shared_and_per_latent_positions_agree() -> None:
    decoder = BasisDecoder(3, BOX, n_basis=4)
    torch.nn.init.normal_(decoder.coefficients.weight)
    z = torch.randn(6, 3)
    positions = torch.rand(20, 3) - 0.5
    shared = decoder(z, positions)
    each = decoder(z, positions.expand(6, -1, -1))
    torch.testing.assert_close(shared, each)
    # the displacement is the coefficients times the basis, Gaussian by Gaussian
    manual = (decoder.coefficients_of(z)[:, None, :, None] * decoder.basis_at(positions)).sum(2)
    torch.testing.assert_close(shared, manual)


def test_a_hinge_rotation_is_rank_two_at_any_angle() -> None:
    """``R(t) p - p = (cos t - 1) u + sin t v`` per point: two basis vectors hold a rotation
    through +-60 degrees exactly (the basis decoder's rank is not the limit for a hinge)."""
    g = np.random.default_rng(0)
    points = g.normal(size=(50, 3))
    angles = np.deg2rad(np.linspace(-60, 60, 41))
    fields = []
    for t in angles:
        c, s = math.cos(t), math.sin(t)
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        fields.append((points @ rotation.T - points).ravel())
    singular = np.linalg.svd(np.array(fields), compute_uv=False)
    assert singular[2] < 1e-10 * singular[0]
    assert singular[1] > 0.1 * singular[0]


def _fit(
    decoder: torch.nn.Module, z: torch.Tensor, points: torch.Tensor, target: torch.Tensor
) -> float:
    """Fit ``decoder`` to ``target`` `(B, N, 3)` by Adam; returns the RMS error left."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=3e-3)
    for _ in range(600):
        optimizer.zero_grad()
        loss = (decoder(z, points) - target).pow(2).mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((decoder(z, points) - target).pow(2).sum(-1).mean().sqrt())


def test_basis_decoder_learns_two_domains_moving_one_after_the_other() -> None:
    """A curved path: along z, domain A turns through 60 degrees, then domain B does; the
    basis decoder fits it as closely as the mlp (both far below the motion)."""
    torch.manual_seed(1)
    points = (torch.rand(120, 3) - 0.5) * 0.5
    first = points[:, 0] < 0
    s = torch.linspace(0, 1, 48)
    z = torch.stack([s, torch.zeros_like(s)], dim=1)

    def turned(p: torch.Tensor, angle: torch.Tensor, centre: float) -> torch.Tensor:
        c, n = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
        x, y = p[None, :, 0] - centre, p[None, :, 1]
        height = p[None, :, 2].expand_as(c * x)
        return torch.stack([c * x - n * y + centre, n * x + c * y, height], -1)

    angle_a = torch.deg2rad(60 * torch.clamp(2 * s, 0, 1))
    angle_b = torch.deg2rad(60 * torch.clamp(2 * s - 1, 0, 1))
    moved = torch.where(
        first[None, :, None], turned(points, angle_a, -0.1), turned(points, angle_b, 0.1)
    )
    target = moved - points[None]
    motion = float(target.pow(2).sum(-1).mean().sqrt())
    errors = {
        kind: _fit(build_decoder(DecoderShape(kind, 2, BOX, n_layers=3)), z, points, target)
        for kind in ("mlp", "basis")
    }
    assert errors["basis"] < 0.15 * motion, (errors, motion)
    assert errors["basis"] < 1.5 * errors["mlp"] + 0.02 * motion, errors


@pytest.mark.parametrize("kind", ["mlp", "basis"])
def test_model_files_record_the_decoder(kind: str, tmp_path: object) -> None:
    model = build_deformation_model(_consensus(), VaeArchitecture(decoder=kind), 16)
    for parameter in model.decoder.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    path = f"{tmp_path}/model.pt"
    save_deformation_model(path, model, {})
    loaded, _ = load_deformation_model(path)
    assert decoder_kind(loaded.decoder) == kind
    z = torch.randn(3, 6)
    torch.testing.assert_close(loaded.displacements_a(z), model.displacements_a(z))
    inverse = build_inverse(6, BOX, 10, 16, 2, kind, 8)
    save_inverse(f"{tmp_path}/inverse.pt", inverse, BOX, {})
    again, _ = load_inverse(f"{tmp_path}/inverse.pt")
    assert describe_inverse(again, BOX) == describe_inverse(inverse, BOX)


def test_records_written_before_the_setting_are_mlp() -> None:
    """A model file from before ``vae.decoder`` has no ``kind``: it is the mlp it was."""
    old = {"latent_dim": 6, "n_frequencies": 10, "width": 32, "n_layers": 8, "box_px": BOX}
    decoder = decoder_from_description(old)
    assert decoder_kind(decoder) == "mlp"
    assert describe_decoder(decoder, BOX) == {**old, "kind": "mlp", "precision": "float32"}
    model = DeformationModel.from_description(
        {
            "consensus": _consensus().describe(),
            "encoder": {"input_px": 16, "latent_dim": 6, "hidden": [256, 128]},
            "decoder": old,
        }
    )
    assert decoder_kind(model.decoder) == "mlp"


def test_unknown_decoder_is_refused() -> None:
    with pytest.raises(ValueError, match=r"vae\.decoder"):
        build_decoder(DecoderShape("transformer", 6, BOX))


# ---- the stopping rule --------------------------------------------------------------------


RULE = StoppingRule(window=5, share=0.05, min_epochs=10)


def test_a_slow_start_never_stops_training() -> None:
    """Flat at the start (nothing learnt yet), then a late descent: the share stays 1."""
    flat = [1.0 + 1e-5 * (i % 2) for i in range(14)]
    assert RULE.descent_share(flat) is None
    assert RULE.reason_to_stop(flat) == ""
    late = [*flat, 0.99, 0.98, 0.97]
    share = RULE.descent_share(late)
    assert share == pytest.approx(1.0) and RULE.reason_to_stop(late) == ""


def test_rule_stops_when_the_recent_descent_is_a_small_share() -> None:
    # an exponential approach: each epoch gains 0.7 of the last one's gain
    losses = [0.97 + 0.03 * 0.7**i for i in range(30)]
    stops = [t for t in range(1, 31) if RULE.reason_to_stop(losses[:t])]
    first = stops[0]
    share = RULE.descent_share(losses[:first])
    assert share is not None and share < 0.05
    before = RULE.descent_share(losses[: first - 1])
    assert before is not None and before >= 0.05
    assert first >= RULE.min_epochs
    assert "converged" in RULE.reason_to_stop(losses[:first])
    assert StoppingRule(5, 0.0, 10).reason_to_stop(losses) == ""  # 0: the rule is off


def test_rule_waits_for_min_epochs() -> None:
    losses = [1.0, 0.9] + [0.9] * 7
    assert RULE.descent_share(losses) == 0.0
    assert RULE.reason_to_stop(losses) == ""  # 9 epochs < min_epochs


def test_latent_change_is_relative_to_the_spread() -> None:
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(500, 4, generator=g) * 3.0
    assert latent_change(None, latents) != latent_change(None, latents)  # nan
    assert latent_change(latents, latents) == 0.0
    moved = latents + 0.3 * torch.randn(500, 4, generator=g)
    assert latent_change(latents, moved) == pytest.approx(0.1, rel=0.1)
