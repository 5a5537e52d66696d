"""Parts of the deformation VAE: encoder, decoder, regulariser, refinement, model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dynamight_core.data.batches import ParticleBatch
from dynamight_core.geometry.fourier import crop_fourier_2d
from dynamight_core.geometry.rotations import euler_to_matrix
from dynamight_core.models import decoder as decoder_module
from dynamight_core.models.decoder import DisplacementDecoder
from dynamight_core.models.deformation import (
    DeformationModel,
    load_deformation_model,
    save_deformation_model,
)
from dynamight_core.models.encoder import ImageEncoder
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.training.half_set_vae import TrainingGrid
from dynamight_core.training.likelihood import FourierLikelihood
from dynamight_core.training.regularisation import deformation_penalty, neighbour_graph
from dynamight_core.training.vae_steps import _refined_and_misfit, predict, refine_latents


def _points(n: int = 200, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) - 0.5) * 40


def test_decoder_starts_undeformed_and_factoring_is_exact() -> None:
    torch.manual_seed(0)
    decoder = DisplacementDecoder(latent_dim=4, box_px=32, n_frequencies=5, width=16, n_layers=3)
    positions, z = torch.rand(50, 3) - 0.5, torch.randn(7, 4)
    assert torch.equal(decoder(z, positions), torch.zeros(7, 50, 3))
    nn.init.normal_(decoder.output.weight)
    # the split first layer equals one layer applied to the concatenated input
    joint = nn.Linear(30 + 4, 16)
    with torch.no_grad():
        joint.weight.copy_(
            torch.cat([decoder.position_layer.weight, decoder.latent_layer.weight], dim=1)
        )
        joint.bias.copy_(decoder.latent_layer.bias)
    encoded = decoder.encode_positions(positions)
    inputs = torch.cat([encoded[None].expand(7, -1, -1), z[:, None].expand(-1, 50, -1)], dim=2)
    hidden = decoder.activation(joint(inputs))
    for layer in decoder.hidden:
        hidden = decoder.activation(layer(hidden))
    torch.testing.assert_close(decoder(z, positions), decoder.output(hidden))


def test_bfloat16_decoder_matches_float32_and_keeps_float32_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same weights in bfloat16 give the float32 displacements to bfloat16's precision
    (a few 1e-3 relative), as float32 tensors, with gradients to z and the weights."""
    monkeypatch.setattr(decoder_module, "bfloat16_is_fast", lambda device: True)
    torch.manual_seed(0)
    exact = DisplacementDecoder(latent_dim=4, box_px=64, n_frequencies=10)
    nn.init.normal_(exact.output.weight, std=0.1)
    fast = DisplacementDecoder(latent_dim=4, box_px=64, n_frequencies=10, precision="bfloat16")
    fast.load_state_dict(exact.state_dict())
    positions, z = torch.rand(300, 3) - 0.5, torch.randn(8, 4, requires_grad=True)
    reference, low = exact(z, positions), fast(z, positions)
    assert low.dtype == torch.float32
    assert fast.low_precision(torch.device("cpu"))
    error = float((low - reference).detach().norm() / reference.detach().norm())
    assert 1e-5 < error < 3e-2, error  # not float32 (so bfloat16 ran), but close
    (grad_z,) = torch.autograd.grad(low.sum(), z)
    (grad_reference,) = torch.autograd.grad(reference.sum(), z)
    assert float((grad_z - grad_reference).norm() / grad_reference.norm()) < 5e-2


def test_decoder_precision_falls_back_to_float32_without_native_bfloat16(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decoder_module, "bfloat16_is_fast", lambda device: False)
    torch.manual_seed(0)
    exact = DisplacementDecoder(latent_dim=4, box_px=64, n_frequencies=10)
    nn.init.normal_(exact.output.weight, std=0.1)
    fast = DisplacementDecoder(latent_dim=4, box_px=64, n_frequencies=10, precision="bfloat16")
    fast.load_state_dict(exact.state_dict())
    positions, z = torch.rand(50, 3) - 0.5, torch.randn(3, 4)
    assert not fast.low_precision(torch.device("cpu"))
    assert torch.equal(fast(z, positions), exact(z, positions))
    with pytest.raises(ValueError, match="precision"):
        DisplacementDecoder(latent_dim=4, box_px=64, precision="float16")


def test_positional_encoding_spans_box_to_half_box_frequencies() -> None:
    decoder = DisplacementDecoder(latent_dim=2, box_px=64, n_frequencies=10)
    assert decoder.frequencies[0] == 1.0 and torch.isclose(
        decoder.frequencies[-1], torch.tensor(32.0)
    )


def test_encoder_outputs_mean_and_log_variance() -> None:
    encoder = ImageEncoder(input_px=16, latent_dim=3, mask_radius_px=6)
    mu, log_var = encoder(torch.randn(5, 16, 16))
    assert mu.shape == log_var.shape == (5, 3)


def test_graph_connects_close_pairs_only() -> None:
    points = _points()
    graph = neighbour_graph(points)
    lengths = (points[graph.edges[:, 0]] - points[graph.edges[:, 1]]).norm(dim=1)
    assert (lengths < graph.radius_a).all()
    all_pairs = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")
    all_pairs.fill_diagonal_(float("inf"))
    close = (all_pairs < graph.radius_a).sum() // 2
    assert len(graph.edges) == int(close)


def test_penalty_ignores_rigid_motion_but_not_stretching() -> None:
    points = _points()
    graph = neighbour_graph(points)
    rotation = euler_to_matrix(torch.tensor([[20.0, 35.0, -50.0]]))[0]
    rigid = (points @ rotation.T + torch.tensor([3.0, -1.0, 2.0]))[None]
    assert deformation_penalty(rigid, graph) < 1e-8
    stretched = points.clone()
    stretched[:, 0] *= 1.3
    assert deformation_penalty(stretched[None], graph) > 1e-3
    collapsed = points.clone()
    collapsed[1] = collapsed[0]
    assert deformation_penalty(collapsed[None], graph) > deformation_penalty(points[None], graph)


def _model() -> DeformationModel:
    torch.manual_seed(1)
    consensus = GaussianModel(_points(60), torch.ones(60), torch.tensor([4.0]), 32, 2.0)
    model = DeformationModel(
        consensus, ImageEncoder(16, 2, 6), DisplacementDecoder(2, 32, 4, 16, 2)
    )
    nn.init.normal_(model.decoder.output.weight, std=0.05)
    return model


def test_refinement_recovers_a_latent_from_its_own_image() -> None:
    model = _model()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    grid = TrainingGrid(32, 2.0, 15, 16)
    rotations = euler_to_matrix(torch.tensor([[10.0, 60.0, 30.0], [100.0, 20.0, -40.0]]))
    batch = ParticleBatch(
        np.arange(2),
        torch.zeros(2, 32, 17, dtype=torch.complex64),
        torch.ones(2, 32, 17),
        rotations,
        torch.zeros(2, 2),
    )
    truth = torch.tensor([[1.0, -0.5], [-0.8, 0.6]])
    with torch.no_grad():
        batch.images_ft = predict(model, batch, grid, model.deformed_positions_a(truth))
    likelihood = FourierLikelihood(torch.ones(17), 32, 15)
    refined = refine_latents(
        model, batch, grid, likelihood, torch.zeros(2, 2), steps=200, lr=0.05, prior_weight=0.0
    )
    assert (refined - truth).abs().max() < 0.05

    # the validation loss is each particle's data term before the last step, from that
    # step's own forward pass: the same as scoring the latents one step earlier
    start = torch.zeros(2, 2)
    z, misfit = _refined_and_misfit(model, batch, grid, likelihood, start, 3, 0.05, 0.0)
    torch.testing.assert_close(
        z, refine_latents(model, batch, grid, likelihood, start, 3, 0.05, 0.0)
    )
    earlier = refine_latents(model, batch, grid, likelihood, start, 2, 0.05, 0.0)
    with torch.no_grad():
        predicted = predict(model, batch, grid, model.deformed_positions_a(earlier))
        expected = likelihood.per_image(predicted, crop_fourier_2d(batch.images_ft, 32))
    assert misfit is not None
    torch.testing.assert_close(misfit, expected)
    assert float(misfit.sum()) > 0


def test_model_file_round_trip(tmp_path: Path) -> None:
    model = _model()
    save_deformation_model(tmp_path / "model.pt", model, {"half": 1})
    assert torch.load(tmp_path / "model.pt", weights_only=True)["extra"] == {"half": 1}
    loaded, _ = load_deformation_model(tmp_path / "model.pt")
    z = torch.randn(3, 2)
    torch.testing.assert_close(loaded.deformed_positions_a(z), model.deformed_positions_a(z))


def test_crop_keeps_low_frequencies() -> None:
    image = torch.randn(1, 32, 32)
    cropped = crop_fourier_2d(torch.fft.rfft2(image), 16)
    full = torch.fft.rfft2(image)
    torch.testing.assert_close(cropped[0, :8, :9], full[0, :8, :9])
    torch.testing.assert_close(cropped[0, 8:, :9], full[0, 24:, :9])


def _two_strands(tmp_path: Path) -> tuple[torch.Tensor, Path]:
    """Two parallel chains of 12 residues (3.8 Å apart along x), 2.5 Å apart in y, written
    as a PDB docked in a 64-px, 2 Å/px map (coordinates from the map's corner), and
    two Gaussians per residue (box-centred Å)."""
    import gemmi

    centre_a = 32 * 2.0
    structure = gemmi.Structure()
    model = gemmi.Model("1")
    gaussians = []
    for name, y_a in (("A", -1.25), ("B", 1.25)):
        chain = gemmi.Chain(name)
        for number in range(12):
            residue = gemmi.Residue()
            residue.name, residue.seqid = "ALA", gemmi.SeqId(number + 1, " ")
            x_a = 3.8 * (number - 5.5)
            for atom_name, dx_a in (("N", -1.2), ("CA", 0.0), ("C", 1.2)):
                atom = gemmi.Atom()
                atom.name, atom.element = atom_name, gemmi.Element(atom_name[0])
                atom.pos = gemmi.Position(x_a + dx_a + centre_a, y_a + centre_a, centre_a)
                residue.add_atom(atom)
            chain.add_residue(residue)
            gaussians += [[x_a - 0.9, y_a, 0.0], [x_a + 0.9, y_a, 0.0]]
        model.add_chain(chain)
    structure.add_model(model)
    path = tmp_path / "strands.pdb"
    structure.write_pdb(str(path))
    return torch.tensor(gaussians), path


def test_bond_graph_links_sequence_neighbours_not_touching_chains(tmp_path: Path) -> None:
    from dynamight_core.io.atomic_model import read_atomic_model
    from dynamight_core.training.regularisation import bond_graph, bonds_from_atomic_model

    positions_a, path = _two_strands(tmp_path)
    atoms = read_atomic_model(path)
    chain_of = np.repeat([0, 1], 24)
    residue_of = np.tile(np.repeat(np.arange(12), 2), 2)
    smooth = neighbour_graph(positions_a).edges.numpy()
    # the smoothness graph joins the two chains (2.5 Å apart) ...
    assert (chain_of[smooth[:, 0]] != chain_of[smooth[:, 1]]).any()
    bonds = bonds_from_atomic_model(
        positions_a, atoms.positions_a - 64.0, atoms.chains, atoms.residue_numbers
    ).numpy()
    # ... the bond graph does not, and links every residue to the next in its chain
    assert (chain_of[bonds[:, 0]] == chain_of[bonds[:, 1]]).all()
    assert (np.abs(residue_of[bonds[:, 0]] - residue_of[bonds[:, 1]]) <= 1).all()
    steps = {(chain_of[i], min(residue_of[i], residue_of[j])) for i, j in bonds}
    assert len(steps) == 2 * 12  # 12 residues per chain: 11 links plus the residue itself
    # sliding one chain along the other costs nothing with bonds, a lot without
    slid = positions_a.clone()
    slid[24:, 0] += 3.0
    graph = bond_graph(positions_a, torch.as_tensor(bonds))
    assert float(deformation_penalty(slid[None], graph)) < 1e-10
    assert float(deformation_penalty(slid[None], neighbour_graph(positions_a))) > 1e-2


def test_undocked_atomic_model_is_rejected(tmp_path: Path) -> None:
    import pytest

    from dynamight_core.errors import InputError
    from dynamight_core.io.atomic_model import read_atomic_model
    from dynamight_core.training.regularisation import bonds_from_atomic_model

    positions_a, path = _two_strands(tmp_path)
    atoms = read_atomic_model(path)
    # coordinates left in the file's frame (not box-centred): nothing covers the Gaussians
    with pytest.raises(InputError, match=r"strands\.pdb.*coordinates"):
        bonds_from_atomic_model(
            positions_a, atoms.positions_a, atoms.chains, atoms.residue_numbers, str(path)
        )
