"""The viewer's logic (ExploreSession) on a tiny model, without napari or Qt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from torch import nn

from dynamight_core.data.latent_space import latent_pca
from dynamight_core.errors import InputError
from dynamight_core.explore.states import render_states
from dynamight_core.models.deformation import VaeArchitecture, build_deformation_model
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.training.half_set_vae import (
    HalfSetVae,
    Refinement,
    TrainingGrid,
    load_half_set_vae,
    save_half_set_vae,
)
from dynamight_core.training.likelihood import FourierLikelihood
from dynamight_core.viewer.session import ExploreSession

N_STAR = 50
LATENT_DIM = 3
BOX = 20


def _image_name(row: int) -> str:
    return f"{row + 1:06d}@Extract/job007/particles.mrcs"


def _write_star(path: Path) -> None:
    """A RELION 3.1 particle STAR file of N_STAR rows (no stacks behind it)."""
    lines = [
        "# version 30001",
        "",
        "data_optics",
        "",
        "loop_",
        "_rlnOpticsGroupName #1",
        "_rlnOpticsGroup #2",
        "_rlnImagePixelSize #3",
        "_rlnImageSize #4",
        "_rlnImageDimensionality #5",
        "opticsGroup1 1 2.000000 20 2",
        "",
        "",
        "data_particles",
        "",
        "loop_",
        "_rlnImageName #1",
        "_rlnOpticsGroup #2",
        "_rlnAngleRot #3",
        "_rlnDefocusU #4",
    ]
    for row in range(N_STAR):
        lines.append(f"{_image_name(row)} 1 {row * 7.25 - 180:.6f} {10000 + 13 * row:.6f}")
    path.write_text("\n".join(lines) + "\n")


def write_viewer_files(folder: Path) -> dict[str, Path]:
    """A tiny half-set VAE, its latent table (30 of the 50 STAR rows) and the STAR file.

    Also used by test_viewer_napari.py.
    """
    generator = torch.Generator().manual_seed(3)
    positions = (torch.rand(24, 3, generator=generator) - 0.5) * 16.0
    consensus = GaussianModel(positions, torch.ones(24), torch.tensor([4.0]), BOX, 2.0)
    architecture = VaeArchitecture(
        latent_dim=LATENT_DIM, encoder_px=10, decoder_layers=1, decoder_width=16, pe_frequencies=2
    )
    torch.manual_seed(3)
    model = build_deformation_model(consensus, architecture, 10)
    # latents move the atoms visibly: the decoder's zero-started layer (the mlp's output,
    # the basis decoder's coefficients)
    started = getattr(model.decoder, "output", None) or model.decoder.coefficients
    nn.init.normal_(started.weight, std=0.1)
    vae = HalfSetVae(
        model=model,
        grid=TrainingGrid(BOX, 2.0, 9, 10),
        likelihood=FourierLikelihood(torch.ones(BOX // 2 + 1), BOX, 9),
        refinement=Refinement(steps=1, lr=0.1, prior_weight=1.0, tracking_steps=1),
        batch_size=8,
        half=2,
    )
    save_half_set_vae(folder / "model.pt", vae)

    rng = np.random.default_rng(5)
    rows = np.sort(rng.choice(N_STAR, size=30, replace=False))
    rng.shuffle(rows)  # the table's order need not be the STAR file's
    latents = rng.normal(size=(30, LATENT_DIM)) * np.array([2.0, 1.0, 0.3])
    table = pd.DataFrame(
        {
            "row": rows,
            "rlnImageName": [_image_name(r) for r in rows],
            "validation": (rows % 5 == 0).astype(int),
        }
    )
    for k in range(LATENT_DIM):
        table[f"mu_{k}"] = latents[:, k]
    table.to_csv(folder / "latents.csv", index=False)
    _write_star(folder / "particles.star")
    return {
        "model": folder / "model.pt",
        "latents": folder / "latents.csv",
        "star": folder / "particles.star",
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_viewer_files(tmp_path_factory.mktemp("viewer_session"))


@pytest.fixture(scope="module")
def session(files: dict[str, Path]) -> ExploreSession:
    return ExploreSession(files["model"], files["latents"], files["star"])


def _table_latents(files: dict[str, Path]) -> np.ndarray:
    table = pd.read_csv(files["latents"])
    return table[[f"mu_{k}" for k in range(LATENT_DIM)]].to_numpy(dtype=np.float64)


def test_session_reads_the_half_set(session: ExploreSession, files: dict[str, Path]) -> None:
    assert session.half == 2
    assert session.latent_dim == LATENT_DIM
    assert session.pixel_size_a == 2.0
    np.testing.assert_array_equal(session.rows, pd.read_csv(files["latents"])["row"])
    expected = latent_pca(_table_latents(files)).scores[:, :2]
    np.testing.assert_allclose(session.scores_2d(), expected)


def test_volume_at_the_mean_is_the_model_at_the_mean_latent(
    session: ExploreSession, files: dict[str, Path]
) -> None:
    model = load_half_set_vae(files["model"]).model.requires_grad_(False)
    pca = latent_pca(_table_latents(files))
    volume = session.volume_at(np.zeros(2))
    assert volume.shape == (BOX, BOX, BOX)
    assert volume.dtype == np.float32
    np.testing.assert_allclose(volume, render_states(model, pca.mean[None])[0], atol=1e-6)

    # a point of the plane: mean + PC1 and PC2 scores along their axes, PC3 at the mean
    point = np.array([1.5, -0.7])
    latent = pca.mean + point[0] * pca.axes[0] + point[1] * pca.axes[1]
    moved = session.volume_at(point)
    np.testing.assert_allclose(moved, render_states(model, latent[None])[0], atol=1e-6)
    assert np.abs(moved - volume).max() > 1e-3 * np.abs(volume).max()


def test_trajectory_runs_between_percentiles_of_the_component(
    session: ExploreSession, files: dict[str, Path]
) -> None:
    model = load_half_set_vae(files["model"]).model.requires_grad_(False)
    pca = latent_pca(_table_latents(files))
    frames = session.trajectory(1, 4, low_pct=10, high_pct=90)
    assert frames.shape == (4, BOX, BOX, BOX)
    ends = np.percentile(pca.scores[:, 1], [10, 90])
    latents = pca.mean[None] + ends[:, None] * pca.axes[1][None]
    np.testing.assert_allclose(frames[[0, -1]], render_states(model, latents), atol=1e-6)
    with pytest.raises(ValueError, match="component"):
        session.trajectory(LATENT_DIM, 4)
    with pytest.raises(ValueError, match="2 frames"):
        session.trajectory(0, 1)


def test_polygon_selects_the_particles_inside(session: ExploreSession) -> None:
    scores = session.scores_2d()
    # a rectangle, and a triangle (x >= -1, y >= -1, x + y <= 1.5)
    rectangle = np.array([[-1.0, -0.5], [2.0, -0.5], [2.0, 0.8], [-1.0, 0.8]])
    inside = (
        (scores[:, 0] > -1.0) & (scores[:, 0] < 2.0) & (scores[:, 1] > -0.5) & (scores[:, 1] < 0.8)
    )
    np.testing.assert_array_equal(session.select_polygon(rectangle), inside)
    triangle = np.array([[-1.0, -1.0], [2.5, -1.0], [-1.0, 2.5]])
    inside = (scores[:, 0] > -1.0) & (scores[:, 1] > -1.0) & (scores.sum(axis=1) < 1.5)
    np.testing.assert_array_equal(session.select_polygon(triangle), inside)
    assert 0 < inside.sum() < len(inside)


def test_saved_selection_and_complement_cover_the_star_file(
    session: ExploreSession, files: dict[str, Path], tmp_path: Path
) -> None:
    vertices = np.array([[-1.0, -0.5], [2.0, -0.5], [2.0, 0.8], [-1.0, 0.8]])
    mask = session.select_polygon(vertices)
    assert 0 < mask.sum() < len(mask)
    selected_path, complement_path = tmp_path / "out/selected.star", tmp_path / "complement.star"
    counts = session.save_selection(mask, selected_path, complement_path)
    assert counts == (int(mask.sum()), N_STAR - int(mask.sum()))

    source = starfile.read(files["star"], always_dict=True)
    selected = starfile.read(selected_path, always_dict=True)
    complement = starfile.read(complement_path, always_dict=True)
    table = pd.read_csv(files["latents"])
    expected = set(table["rlnImageName"][mask])
    assert set(selected["particles"]["rlnImageName"]) == expected
    assert len(selected["particles"]) == len(expected)
    everything = list(selected["particles"]["rlnImageName"]) + list(
        complement["particles"]["rlnImageName"]
    )
    assert sorted(everything) == sorted(source["particles"]["rlnImageName"])
    # the other half set's particles are all in the complement
    other_half = set(source["particles"]["rlnImageName"]) - set(table["rlnImageName"])
    assert other_half <= set(complement["particles"]["rlnImageName"])
    pd.testing.assert_frame_equal(selected["optics"], source["optics"])


def test_saving_needs_a_star_file_and_a_mask_of_the_half_set(
    session: ExploreSession, files: dict[str, Path], tmp_path: Path
) -> None:
    without = ExploreSession(files["model"], files["latents"])
    np.testing.assert_array_equal(without.scores_2d(), session.scores_2d())
    mask = np.ones(len(without.rows), dtype=bool)
    with pytest.raises(InputError, match="--star"):
        without.save_selection(mask, tmp_path / "a.star", tmp_path / "b.star")
    with pytest.raises(InputError, match="mask"):
        session.save_selection(mask[:-1], tmp_path / "a.star", tmp_path / "b.star")
    with pytest.raises(InputError, match="mask"):
        session.save_selection(mask.astype(int), tmp_path / "a.star", tmp_path / "b.star")
    assert not (tmp_path / "a.star").exists()


def test_latents_of_another_star_file_or_model_are_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    table = pd.read_csv(files["latents"])
    renamed = table.assign(rlnImageName=table["rlnImageName"].str.replace("job007", "job008"))
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    with pytest.raises(InputError, match="rlnImageName"):
        ExploreSession(files["model"], tmp_path / "renamed.csv", files["star"])
    table.assign(row=table["row"] + N_STAR).to_csv(tmp_path / "rows.csv", index=False)
    with pytest.raises(InputError, match="row"):
        ExploreSession(files["model"], tmp_path / "rows.csv", files["star"])
    table.drop(columns="mu_2").to_csv(tmp_path / "narrow.csv", index=False)
    with pytest.raises(InputError, match="latent dimension"):
        ExploreSession(files["model"], tmp_path / "narrow.csv")
