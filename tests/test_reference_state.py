"""The reference state of the deformed maps (issue 28): one conformation for both halves.

Known truth: a consensus that training moved by a known offset, particles that all sit in
the consensus fit's state, rigid and non-rigid differences between two halves' states.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dynamight_core.errors import InputError
from dynamight_core.geometry.scattered import kernel_interpolate
from dynamight_core.models.decoder import DisplacementDecoder
from dynamight_core.models.deformation import DeformationModel
from dynamight_core.models.encoder import ImageEncoder
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.reconstruct.deformed_projector import ControlGrid
from dynamight_core.reconstruct.reference_state import (
    ReferenceState,
    drift_a,
    mean_positions_a,
    reference_state,
)

BOX, PIXEL = 32, 2.0
BOX_A = BOX * PIXEL


def _rotation(axis: int, degrees: float) -> torch.Tensor:
    """`(3, 3)` rotation by ``degrees`` about coordinate ``axis``."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [k for k in range(3) if k != axis]
    rotation = torch.eye(3)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    return rotation


def _cloud(n: int = 300, seed: int = 0) -> torch.Tensor:
    """`(n, 3)` pseudo-atoms (Å) in a ball of 18 Å."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.randn(n, 3, generator=generator)
    return 18.0 * points / points.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=generator)


def _state(
    kind: str, consensus: torch.Tensor, fit: torch.Tensor, mean: torch.Tensor
) -> ReferenceState:
    reference = {"consensus_fit": fit, "mean": mean, "trained": consensus}[kind]
    return ReferenceState(kind, reference, consensus, fit, mean, BOX_A, 3.0)


def test_kernel_interpolation_keeps_constants_and_extends_the_nearest_values() -> None:
    sites = _cloud()
    values = torch.tensor([[1.0, -2.0, 0.5]]).expand(len(sites), 3)
    points = torch.rand(50, 3) * 40 - 20
    assert torch.allclose(kernel_interpolate(points, sites, values, 3.0).float(), values[:50])
    # far from every site, a point takes the nearest site's value (no decay to zero)
    two = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    far = kernel_interpolate(
        torch.tensor([[40.0, 0.0, 0.0]]), two, torch.tensor([[0.0], [1.0]]), 2.0
    )
    assert float(far) == pytest.approx(1.0)


def test_trained_reference_is_the_decoder_field_itself() -> None:
    cloud = _cloud()
    state = _state("trained", cloud, cloud + 1.0, cloud)

    def base(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return latents[:, None, :3] + 0 * points[None]

    assert state.field(base) is base


def test_a_drifted_consensus_is_brought_back_to_the_consensus_fit() -> None:
    """Training moved the consensus by ``s`` and the decoder learned ``-s``: every particle
    is in the fit's state. With the consensus fit as reference the map's field vanishes
    there (the map is in the particles' state); with the trained consensus it is ``-s``."""
    fit = _cloud()
    drift = torch.tensor([1.2, -0.6, 0.3])  # Å
    consensus = fit + drift

    def decoder(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return (-drift / BOX_A).expand(latents.shape[0], points.shape[0], 3)

    latents = torch.randn(5, 4)
    nodes = ControlGrid(BOX, 9).nodes
    inside = (nodes * BOX_A).norm(dim=1) < 15.0
    for kind, expected in (("consensus_fit", torch.zeros(3)), ("trained", -drift)):
        state = _state(kind, consensus, fit, fit)
        field = state.field(decoder)(latents, nodes) * BOX_A
        assert torch.allclose(field[:, inside], expected.expand_as(field[:, inside]), atol=1e-4)


def test_a_rotated_consensus_is_undone_pointwise() -> None:
    """A non-uniform drift (a small rotation of the consensus): the offset field follows it
    inside the molecule to a small fraction of the drift."""
    fit = _cloud(600)
    angle = math.radians(3.0)
    rotation = torch.tensor(
        [
            [math.cos(angle), -math.sin(angle), 0.0],
            [math.sin(angle), math.cos(angle), 0.0],
            [0, 0, 1],
        ]
    )
    consensus = fit @ rotation.T
    state = _state("consensus_fit", consensus, fit, fit)
    probe = _cloud(200, seed=1) * 0.7
    offset = state.offsets(probe / BOX_A) * BOX_A
    truth = probe @ rotation.T - probe
    error = (offset - truth).norm(dim=1)
    assert float(error.mean()) < 0.1 * float(truth.norm(dim=1).mean())


def _model(positions_a: torch.Tensor) -> DeformationModel:
    masses = torch.ones(len(positions_a))
    consensus = GaussianModel(positions_a, masses, torch.tensor([3.0]), BOX, PIXEL)
    decoder = DisplacementDecoder(4, BOX, n_frequencies=3, width=16, n_layers=2)
    torch.nn.init.normal_(decoder.output.weight, std=0.01)
    return DeformationModel(consensus, ImageEncoder(16, 4, 8.0), decoder)


def test_mean_state_is_the_mean_of_the_decoded_positions() -> None:
    model = _model(_cloud(100))
    latents = torch.randn(70, 4)
    with torch.no_grad():
        expected = model.deformed_positions_a(latents).double().mean(dim=0).float()
    assert torch.allclose(mean_positions_a(model, latents, batch_size=16), expected, atol=1e-5)
    state = reference_state("mean", model, latents, model.consensus.positions_a().detach(), 16)
    assert torch.equal(state.reference_a, state.mean_a)
    assert drift_a(state)["trained_from_fit_rms_a"] == 0.0


def test_unknown_reference_is_refused() -> None:
    model = _model(_cloud(20))
    with pytest.raises(ValueError, match="consensus_fit"):
        reference_state("middle", model, torch.zeros(3, 4), model.consensus.positions_a(), 16)


def test_reference_state_files_are_checked(tmp_path: Path) -> None:
    from dynamight_core.stages.fsc_deformed import read_reference_states

    cloud = _cloud(50)
    paths = []
    for half, kind in ((1, "mean"), (2, "consensus_fit"), (1, "mean"), (2, "mean")):
        path = tmp_path / f"state_{len(paths)}.pt"
        torch.save({**_state(kind, cloud, cloud, cloud).state(), "half": half}, path)
        paths.append(str(path))
    with pytest.raises(InputError, match="reference"):
        read_reference_states(paths[:2])
    with pytest.raises(InputError, match="half"):
        read_reference_states([paths[0], paths[2]])
    torch.save({"kind": "other"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="kind"):
        read_reference_states([str(tmp_path / "other.pt"), paths[3]])
    one, two = read_reference_states([paths[0], paths[3]])
    assert one.kind == two.kind == "mean" and torch.equal(one.reference_a, cloud)


def _blobs(centres_a: np.ndarray, box: int = 48, pixel: float = 2.0) -> np.ndarray:
    """`(D, D, D)` sum of Gaussians (sigma 2.5 Å) at `(N, 3)` centres (x, y, z, Å)."""
    axis = (np.arange(box) - box // 2) * pixel
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    volume = np.zeros((box, box, box))
    for cx, cy, cz in centres_a:
        volume += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * 2.5**2))
    return volume


def test_conformation_difference_sees_a_domain_shift_not_noise_or_a_rigid_move() -> None:
    """Two domains of blobs: noise alone gives a small value; one domain moved by 1.5 Å a
    large one; the whole molecule moved rigidly by 1 Å a rigid part of ~1 Å and a small rest."""
    from dynamight_core.metrics.registration import conformation_difference

    generator = np.random.default_rng(0)
    fixed_domain = generator.uniform(-12, 0, (40, 3))
    moving_domain = generator.uniform(0, 12, (40, 3))
    first = _blobs(np.concatenate([fixed_domain, moving_domain]))
    radius = np.sqrt(sum(a**2 for a in np.meshgrid(*[np.arange(48) - 24] * 3, indexing="ij")))
    mask = (radius < 20).astype(float)

    def noisy(volume: np.ndarray) -> np.ndarray:
        return volume + 0.05 * volume.std() * generator.standard_normal(volume.shape)

    same = conformation_difference(noisy(first), noisy(first), mask, 2.0)
    step = np.array([0.0, 1.5, 0.0])
    shifted = _blobs(np.concatenate([fixed_domain, moving_domain + step]))
    domain = conformation_difference(noisy(first), noisy(shifted), mask, 2.0)
    moved = _blobs(np.concatenate([fixed_domain, moving_domain]) + np.array([1.0, 0.0, 0.0]))
    rigid = conformation_difference(noisy(first), noisy(moved), mask, 2.0)
    assert same.rms_a < 0.1 and same.rigid_rms_a < 0.1, same
    assert 0.3 < domain.rms_a < 1.5 and domain.rms_a > 4 * same.rms_a, domain
    assert 0.8 < rigid.rigid_rms_a < 1.2 and rigid.rms_a < 0.3, rigid
    assert domain.residual_after < domain.residual_before


def test_a_reversed_half_takes_its_percentiles_from_the_other_end() -> None:
    from dynamight_core.data.latent_space import latent_pca
    from dynamight_core.reconstruct.state_maps import state_latents

    latents = np.random.default_rng(0).standard_normal((500, 3)) * [3.0, 1.0, 0.5]
    pca = latent_pca(latents)
    low, high = state_latents(pca, 0, 1, [5.0, 95.0])
    flipped_low, flipped_high = state_latents(pca, 0, -1, [5.0, 95.0])
    np.testing.assert_allclose(flipped_low, high)
    np.testing.assert_allclose(flipped_high, low)
    assert pca.project(low[None])[0, 0] < pca.project(high[None])[0, 0]


def test_direction_alignment_finds_the_sign_of_one_motion() -> None:
    from dynamight_core.data.latent_alignment import align_directions

    one, two = _cloud(300, seed=4).double().numpy(), _cloud(280, seed=5).double().numpy()

    def hinge(points: np.ndarray) -> np.ndarray:  # a domain turning about the z axis
        return np.where(points[:, :1] > 0, np.cross([0.0, 0.0, 0.1], points), 0.0)

    same = align_directions((one, two), (hinge(one), -hinge(two)), 4.0)
    assert same.sign == -1 and same.aligned and same.correlation > 0.9
    noise = np.random.default_rng(1).standard_normal(two.shape)
    unrelated = align_directions((one, two), (hinge(one), noise), 4.0)
    assert not unrelated.aligned


def test_half_orientation_flips_only_an_aligned_half_two(tmp_path: Path) -> None:
    import json

    from dynamight_core.data.latent_alignment import ALIGNMENT_KIND, half_orientation
    from dynamight_core.data.latent_space import latent_pca

    def record(sign: int, aligned: bool) -> Path:
        path = tmp_path / f"alignment_{sign}_{aligned}.json"
        fields = {"sign": sign, "correlation": 0.9 if aligned else 0.1, "aligned": aligned}
        path.write_text(json.dumps({"kind": ALIGNMENT_KIND, "models_sha256": ["a", "b"], **fields}))
        return path

    assert half_orientation(record(-1, True), 1, "a").sign == 1
    assert half_orientation(record(-1, True), 2, "b").sign == -1
    weak = half_orientation(record(-1, False), 2, "b")
    assert weak.sign == 1 and not weak.aligned and weak.agreement == pytest.approx(0.1)
    with pytest.raises(InputError, match="models_sha256"):
        half_orientation(record(-1, True), 2, "a")  # half 1's model given as half 2's
    latents = np.random.default_rng(0).standard_normal((200, 3)) * [3.0, 1.0, 0.5]
    pca = latent_pca(latents)
    flipped = pca.with_pc1_sign(-1)
    np.testing.assert_allclose(flipped.scores[:, 0], -pca.scores[:, 0])
    np.testing.assert_allclose(flipped.scores[:, 1:], pca.scores[:, 1:])
    np.testing.assert_allclose(flipped.project(latents), flipped.scores, atol=1e-9)
