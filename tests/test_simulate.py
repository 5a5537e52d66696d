"""The simulator: SNR definition, motion ground truth, atomic-model input."""

from __future__ import annotations

import json
from pathlib import Path

import gemmi
import mrcfile
import numpy as np
import pandas as pd
import pytest

from dynamight_core.errors import InputError
from dynamight_core.geometry.masks import circular_mask
from dynamight_core.io.star import read_particles
from dynamight_core.simulate.dataset import (
    SimulationConfig,
    _Renderer,
    build_model,
    simulate_dataset,
)
from dynamight_core.simulate.motion import HingeMotion, axis_angle_matrix, true_displacements_a


def test_snr_and_noise_level_follow_the_definition(small_dataset: Path) -> None:
    meta = json.loads((small_dataset / "truth" / "motion.json").read_text())
    config = SimulationConfig(**{k: v for k, v in meta["config"].items()})
    masses, motion = build_model(config)
    table = pd.read_csv(small_dataset / "truth.csv")
    particles = read_particles(small_dataset / "particles.star")
    full_table = particles.particles.assign(motion_coordinate=table["motion_coordinate"])
    clean = _Renderer(config, masses, motion, full_table).images(np.arange(100))
    clean *= meta["image_scale"]
    with mrcfile.open(small_dataset / "particles.mrcs") as mrc:
        noisy = np.asarray(mrc.data[:100])
    noise = noisy - clean
    assert noise.std() == pytest.approx(1.0, rel=0.02)
    disc = circular_mask(64, meta["particle_radius_a"] / config.pixel_size_a) > 0.5
    measured_snr = clean[:, disc].var(axis=1).mean() / noise.var()
    assert measured_snr == pytest.approx(config.snr, rel=0.15)


def test_hinge_ground_truth(small_dataset: Path) -> None:
    truth = pd.read_csv(small_dataset / "truth.csv")
    assert truth["hinge_angle_deg"].between(-30, 30).all()
    assert truth["hinge_angle_deg"].std() > 10  # spread over the range
    names = read_particles(small_dataset / "particles.star").image_names()
    assert truth["rlnImageName"].tolist() == names
    first = mrcfile.read(small_dataset / "truth" / "state_00.mrc")
    last = mrcfile.read(small_dataset / "truth" / "state_04.mrc")
    # the body (x < -10 Å, i.e. index < 27) stays put, the arm moves
    body = first[:, :, :27] - last[:, :, :27]
    arm = first[:, :, 40:] - last[:, :, 40:]
    assert np.abs(body).max() < 0.05 * np.abs(arm).max()


def test_true_displacements_rotate_the_moving_domain() -> None:
    reference = np.array([[-10.0, 0, 0], [10.0, 0, 0], [20.0, 5, 0]])
    motion = HingeMotion(
        reference, np.array([False, True, True]), np.zeros(3), np.array([0.0, 0.0, 1.0]), 30.0
    )
    points = np.array([[-9.0, 1, 0], [19.0, 5, 1]])
    displacement = true_displacements_a(motion, points, np.array([0.5, 1.0]))
    np.testing.assert_allclose(displacement[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(displacement[1, 0], 0.0)
    expected = axis_angle_matrix(np.array([0.0, 0.0, 1.0]), np.deg2rad(30.0)) @ points[1]
    np.testing.assert_allclose(displacement[1, 1], expected - points[1], atol=1e-12)


def _write_two_chain_model(path: Path, shift: float = 0.0) -> None:
    structure = gemmi.Structure()
    model = gemmi.Model("1")
    for chain_name, x0 in (("A", -12.0), ("B", 12.0 + shift)):
        chain = gemmi.Chain(chain_name)
        for number in range(1, 9):
            residue = gemmi.Residue()
            residue.name = "ALA"
            residue.seqid = gemmi.SeqId(number, " ")
            atom = gemmi.Atom()
            atom.name = "CA"
            atom.element = gemmi.Element("C")
            atom.pos = gemmi.Position(x0 + 1.5 * np.cos(number), 3.8 * (number - 4), 0.0)
            residue.add_atom(atom)
            chain.add_residue(residue)
        model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    structure.write_pdb(str(path))


def test_atomic_model_input(tmp_path: Path) -> None:
    _write_two_chain_model(tmp_path / "model.pdb")
    config = SimulationConfig(
        n_particles=20,
        box_px=32,
        pixel_size_a=2.5,
        width_a=4.0,
        atomic_model=str(tmp_path / "model.pdb"),
        moving_selection="B",
        n_truth_maps=2,
    )
    simulate_dataset(config, tmp_path / "sim")
    atoms = pd.read_csv(tmp_path / "sim" / "truth" / "atoms.csv")
    assert len(atoms) == 16 and atoms["moving"].sum() == 8
    assert len(read_particles(tmp_path / "sim" / "particles.star")) == 20


def test_interpolation_needs_equal_atoms(tmp_path: Path) -> None:
    _write_two_chain_model(tmp_path / "a.pdb")
    structure = gemmi.read_structure(str(tmp_path / "a.pdb"))
    structure[0].remove_chain("B")
    structure.write_pdb(str(tmp_path / "b.pdb"))
    config = SimulationConfig(
        n_particles=4,
        motion="interpolate",
        atomic_model=str(tmp_path / "a.pdb"),
        second_model=str(tmp_path / "b.pdb"),
    )
    with pytest.raises(InputError, match="16 heavy atoms"):
        build_model(config)


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(InputError, match="box_px"):
        SimulationConfig(box_px=63)
    with pytest.raises(InputError, match="second_model"):
        SimulationConfig(motion="interpolate")
