"""Latent-space exploration: maps, movies, pseudo-atoms and particle subsets.

Checked on the demo workflow's own outputs (``local_run``: the shipped config on the
simulated hinge motion), so that what is tested is what a user gets.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import gemmi
import numpy as np
import pandas as pd
import pytest
import starfile
import torch
from PIL import Image
from scipy.spatial import cKDTree

from dynamight_core.config import defaults
from dynamight_core.data.latent_space import latent_pca
from dynamight_core.explore.states import centre_of_mass_a, map_frame_a
from dynamight_core.io.mrc import read_volume
from dynamight_core.models.deformation import displacement_rms_a
from dynamight_core.reconstruct.deformed_filter import spread_trilinear
from dynamight_core.simulate.truth import load_truth
from dynamight_core.training.half_set_vae import load_half_set_vae

EXPLORE = defaults()["explore"]
HALVES = (1, 2)
CHIMERAX_COMMANDS = {"open", "volume", "vseries", "style", "color", "view"}


def _run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "dynamight_core", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _moving_domain_weights(truth_dir: Path, box_px: int, pixel_size_a: float) -> np.ndarray:
    """`(D, D, D)` 1 where the voxel is nearer the moving domain (any state) than the rest."""
    motion = load_truth(truth_dir).motion
    states = motion.positions(np.linspace(0.0, 1.0, 11))
    labels = np.tile(np.asarray(motion.moving), len(states))
    z, y, x = np.indices((box_px,) * 3)
    voxels = (np.stack([x, y, z], -1).reshape(-1, 3) - box_px // 2) * pixel_size_a
    _, nearest = cKDTree(states.reshape(-1, 3)).query(voxels)
    return labels[nearest].reshape((box_px,) * 3).astype(np.float64)


def _true_direction(truth_dir: Path) -> tuple[np.ndarray, float]:
    """Unit direction of the moving domain's centre over the motion, and its travel (Å)."""
    motion = load_truth(truth_dir).motion
    moving = np.asarray(motion.moving)
    ends = motion.positions(np.array([0.0, 1.0]))[:, moving].mean(axis=1)
    travel = ends[1] - ends[0]
    return travel / np.linalg.norm(travel), float(np.linalg.norm(travel))


@pytest.mark.parametrize("half", HALVES)
def test_maps_along_pc1_follow_the_true_hinge(local_run: Path, half: int) -> None:
    folder = local_run / f"results/explore/half{half}/pc1"
    paths = sorted(folder.glob("state_*.mrc"))
    assert len(paths) == EXPLORE["states"]
    consensus = read_volume(local_run / "results/consensus/full.mrc")
    volumes = [read_volume(path) for path in paths]
    for volume in volumes:
        assert volume.box_px == consensus.box_px
        assert volume.voxel_size_a == pytest.approx(consensus.voxel_size_a, rel=1e-5)
    truth_dir = local_run / "results/simulated"
    pixel = consensus.voxel_size_a
    weights = _moving_domain_weights(truth_dir, consensus.box_px, pixel)
    direction, travel_a = _true_direction(truth_dir)
    along = np.array([centre_of_mass_a(v.data, pixel, weights) @ direction for v in volumes])
    steps = np.diff(along)
    # monotonic along the true hinge direction (PC1's sign is arbitrary), every step
    assert (steps > 0).all() or (steps < 0).all(), along
    # and a real part of the motion: the 5th-95th percentile path covers most of it
    assert abs(along[-1] - along[0]) > 0.4 * travel_a, (along, travel_a)
    # the fixed domain stays put
    fixed = [centre_of_mass_a(v.data, pixel, 1.0 - weights) for v in volumes]
    assert np.ptp(np.asarray(fixed) @ direction) < 0.25 * abs(along[-1] - along[0])


def test_both_halves_maps_and_movies_run_the_same_way(local_run: Path) -> None:
    """Half 2's PC1 is shown oriented as half 1's: its maps and movie start at the same end.

    The direction is read from the simulation's truth (the moving domain's centre along
    the true travel), not from the alignment the workflow used.
    """
    results = local_run / "results"
    alignment = json.loads((results / "latent/alignment.json").read_text())
    assert alignment["aligned"], alignment
    consensus = read_volume(results / "consensus/full.mrc")
    pixel = consensus.voxel_size_a
    weights = _moving_domain_weights(results / "simulated", consensus.box_px, pixel)
    direction, travel_a = _true_direction(results / "simulated")
    for pattern in ("pc1/state_*.mrc", "movie/frame_*.mrc"):
        travels = []
        for half in HALVES:
            paths = sorted((results / f"explore/half{half}").glob(pattern))
            first, last = (
                centre_of_mass_a(read_volume(p).data, pixel, weights)
                for p in paths[:: len(paths) - 1]
            )
            travels.append(float((last - first) @ direction))
        assert min(abs(t) for t in travels) > 0.3 * travel_a, (pattern, travels)
        assert np.sign(travels[0]) == np.sign(travels[1]), (pattern, travels)
    for half in HALVES:
        record = json.loads((results / f"latent/half{half}/latent_space.json").read_text())
        orientation = record["pc1_orientation"]
        assert orientation["half"] == half
        assert orientation["sign"] == (alignment["sign"] if half == 2 else 1)
        assert orientation["agreement"] == pytest.approx(alignment["correlation"])
    summary = json.loads((results / "summary.json").read_text())
    assert summary["latent"]["pc1_orientation"]["sign"] == alignment["sign"]
    assert f"{alignment['correlation']:.2f}" in (results / "report.html").read_text()


@pytest.mark.parametrize("half", HALVES)
def test_pseudo_atoms_read_back_and_overlay_the_maps(local_run: Path, half: int) -> None:
    folder = local_run / f"results/explore/half{half}"
    vae = load_half_set_vae(local_run / f"results/vae/half{half}/model.pt")
    consensus = vae.model.consensus
    positions = consensus.positions_a().detach().double().numpy()
    expected = map_frame_a(positions, consensus.box_px, consensus.pixel_size_a)
    latents = pd.read_csv(local_run / f"results/vae/half{half}/latents.csv")
    means = latents[[c for c in latents.columns if c.startswith("mu_")]].to_numpy()
    rms = displacement_rms_a(vae.model.requires_grad_(False), means)
    for suffix, tolerance in ((".pdb", 1e-3), (".cif", 1e-5)):
        structure = gemmi.read_structure(str(folder / f"pseudo_atoms{suffix}"))
        assert len(structure) == 1 + EXPLORE["states"]  # the consensus, then the states
        first = structure[0]
        atoms = [atom for chain in first for residue in chain for atom in residue]
        read = np.array([(a.pos.x, a.pos.y, a.pos.z) for a in atoms])
        np.testing.assert_allclose(read, expected, atol=tolerance)
        np.testing.assert_allclose([a.b_iso for a in atoms], rms, atol=0.01)
        counts = {len([1 for ch in model for r in ch for _ in r]) for model in structure}
        assert counts == {consensus.n_gaussians}
    # the pseudo-atoms sit in the map: the render's centre of mass is theirs
    masses = consensus.channel_masses().sum(dim=1).detach().double().numpy()
    render = consensus.volume().detach().numpy()
    centre = centre_of_mass_a(render, consensus.pixel_size_a)
    np.testing.assert_allclose(centre, (masses[:, None] * expected).sum(0) / masses.sum(), atol=0.3)


def _chimerax_lines(script: Path) -> list[list[str]]:
    lines = [line.split() for line in script.read_text().splitlines()]
    commands = [words for words in lines if words and not words[0].startswith("#")]
    for words in commands:
        assert words[0] in CHIMERAX_COMMANDS, words
        if words[0] in ("volume", "vseries", "style", "color") and words[1] != "bfactor":
            assert re.fullmatch(r"#\d+", words[1] if words[0] != "vseries" else words[2]), words
        if words[0] == "volume":
            options = words[2:]
            assert len(options) % 2 == 0, words  # keyword value pairs
    return commands


def test_movie_script_opens_every_frame_as_a_series(local_run: Path) -> None:
    folder = local_run / "results/explore/half1/movie"
    commands = _chimerax_lines(folder / "movie.cxc")
    opened = [words for words in commands if words[0] == "open"]
    series, atoms = opened
    assert series[2:] == ["format", "mrc", "vseries", "true"]
    frames = sorted(folder.glob(series[1]))  # ChimeraX runs a .cxc from its own folder
    assert len(frames) == EXPLORE["movie_frames"]
    assert [f.name for f in frames] == sorted(
        json.loads((folder / "movie.json").read_text())["frames"]
    )
    assert (folder / atoms[1]).is_file() and atoms[2:] == ["coordsets", "true"]
    level = float(next(w for w in commands if w[0] == "volume")[3])
    peak = max(float(read_volume(frame).data.max()) for frame in frames)
    assert 0 < level < peak
    structure = gemmi.read_structure(str(folder / atoms[1]))
    assert len(structure) == EXPLORE["movie_frames"]
    with Image.open(folder / "movie.gif") as gif:
        assert gif.n_frames == 2 * EXPLORE["movie_frames"] - 2  # forward and back


def test_maps_script_opens_the_maps_and_pseudo_atoms(local_run: Path) -> None:
    folder = local_run / "results/explore/half2/pc1"
    commands = _chimerax_lines(folder / "maps.cxc")
    opened = [words[1] for words in commands if words[0] == "open"]
    for name in opened:
        assert (folder / name).is_file(), name
    assert sorted(opened[:-1]) == sorted(p.name for p in folder.glob("state_*.mrc"))
    assert opened[-1] == "../pseudo_atoms.cif"


def test_report_shows_the_movies(local_run: Path) -> None:
    text = (local_run / "results/report.html").read_text()
    assert text.count("data:image/gif;base64,") == 2


def test_select_by_pc1_percentiles_writes_subset_and_complement(
    local_run: Path, tmp_path: Path
) -> None:
    """The README's example: the lowest 30% of the aligned PC1 in both half sets is one end
    of the simulation's true motion in both (the mean true hinge coordinate of each half's
    selection lies on the same side of the whole set's), and without the alignment the
    two tables are refused."""
    results = local_run / "results"
    star = results / "simulated/particles.star"
    latents = [results / f"vae/half{h}/latents.csv" for h in HALVES]
    alignment = results / "latent/alignment.json"
    selected, complement = tmp_path / "selected.star", tmp_path / "complement.star"
    arguments = ["explore", "select", "--latents", *map(str, latents), "--star", str(star)]
    arguments += ["--pc-percentiles", "1:0:30", "--out-selected", str(selected)]
    arguments += ["--out-complement", str(complement)]
    unaligned = subprocess.run(
        [sys.executable, "-m", "dynamight_core", *arguments], capture_output=True, text=True
    )
    assert unaligned.returncode == 2 and "--alignment" in unaligned.stderr, unaligned.stderr
    assert not selected.exists()
    _run(
        *arguments,
        "--alignment",
        str(alignment),
        "--out-csv",
        str(tmp_path / "selection.csv"),
        cwd=tmp_path,
    )
    original = starfile.read(star, always_dict=True)
    chosen = starfile.read(selected, always_dict=True)
    rest = starfile.read(complement, always_dict=True)
    pd.testing.assert_frame_equal(chosen["optics"], original["optics"])
    particles = original["particles"]
    # the particles chosen independently: the lowest 30% of the aligned PC1 in each half
    sign = json.loads(alignment.read_text())["sign"]
    truth = load_truth(results / "simulated").coordinates
    expected = np.zeros(len(particles), dtype=bool)
    ends = []
    for half, path in zip(HALVES, latents, strict=True):
        table = pd.read_csv(path)
        scores = latent_pca(table[[c for c in table if c.startswith("mu_")]].to_numpy()).scores
        pc1 = scores[:, 0] * (sign if half == 2 else 1)
        rows = table["row"].to_numpy()[pc1 <= np.percentile(pc1, 30)]
        expected[rows] = True
        ends.append(float(truth[rows].mean() - truth.mean()))
    assert abs(expected.mean() - 0.3) < 0.01
    assert ends[0] * ends[1] > 0, ends  # one end of the motion in both half sets
    # a score correlated r with the truth puts its lowest 30% about 1.16 r sigma below the
    # mean; the aligned test asks r > 0.5 (0.58 sigma): half that is a safe floor
    assert min(abs(end) for end in ends) > 0.25 * float(truth.std()), ends
    pd.testing.assert_frame_equal(
        chosen["particles"], particles[expected].reset_index(drop=True), check_exact=True
    )
    pd.testing.assert_frame_equal(
        rest["particles"], particles[~expected].reset_index(drop=True), check_exact=True
    )


def test_maps_at_clusters_and_reconstruction_of_nearest_particles(
    local_run: Path, tmp_path: Path
) -> None:
    results = local_run / "results"
    base = [
        "explore",
        "maps",
        "--model",
        str(results / "vae/half1/model.pt"),
        "--latents",
        str(results / "vae/half1/latents.csv"),
        "--threads",
        "1",
    ]
    _run(*base, "--clusters", "3", "--out-dir", str(tmp_path / "clusters"), cwd=local_run)
    clusters = pd.read_csv(tmp_path / "clusters/clusters.csv")
    points = pd.read_csv(tmp_path / "clusters/points.csv")
    assert len(points) == 3 and set(clusters["cluster"]) == {0, 1, 2}
    assert points["particles"].sum() == len(clusters)
    assert (np.diff(points["pc1"]) > 0).all()  # numbered along PC1
    table = pd.read_csv(results / "vae/half1/latents.csv")
    point = table[[c for c in table if c.startswith("mu_")]].median().to_numpy()
    _run(
        *base,
        "--points=" + ",".join(f"{v:.6f}" for v in point),  # the first value may be negative
        "--reconstruct-nearest",
        "400",
        "--star",
        str(results / "simulated/particles.star"),
        "--halves",
        str(results / "halves.csv"),
        "--out-dir",
        str(tmp_path / "nearest"),
        cwd=local_run,
    )
    render = read_volume(tmp_path / "nearest/state_000.mrc")
    reconstruction = read_volume(tmp_path / "nearest/reconstruction_000.mrc").data
    correlation = np.corrcoef(render.data.ravel(), reconstruction.ravel())[0, 1]
    assert correlation > 0.8, correlation
    # the reconstruction is in the point's state: its moving domain where the render's is
    weights = _moving_domain_weights(results / "simulated", render.box_px, render.voxel_size_a)
    np.testing.assert_allclose(
        centre_of_mass_a(reconstruction, render.voxel_size_a, weights),
        centre_of_mass_a(render.data, render.voxel_size_a, weights),
        atol=1.0,
    )


def test_reconstruct_nearest_moves_each_end_into_its_true_state(
    local_run: Path, tmp_path: Path
) -> None:
    """--reconstruct-nearest at latent points near both ends of the true motion: each end's
    reconstruction has the moving domain where the simulation's truth puts it there.

    The points are the mean latents of the half set's particles with the lowest and the
    highest 10% of the true hinge coordinate; the moving domain's centre of mass (inside the
    region it sweeps) moves from one end's reconstruction to the other's along the true
    direction by a real part of the true travel between the two ends' mean states, and
    each end's reconstruction agrees with the model rendered at its point.
    """
    results = local_run / "results"
    truth = load_truth(results / "simulated")
    table = pd.read_csv(results / "vae/half1/latents.csv")
    means = table[[c for c in table if c.startswith("mu_")]].to_numpy()
    coordinates = truth.coordinates[table["row"].to_numpy()]
    low, high = np.percentile(coordinates, [10, 90])
    ends = [coordinates <= low, coordinates >= high]
    points = ";".join(",".join(f"{v:.6f}" for v in means[end].mean(0)) for end in ends)
    _run(
        "explore", "maps", "--model", str(results / "vae/half1/model.pt"),
        "--latents", str(results / "vae/half1/latents.csv"), "--threads", "1",
        f"--points={points}", "--reconstruct-nearest", "300",
        "--star", str(results / "simulated/particles.star"),
        "--halves", str(results / "halves.csv"), "--out-dir", str(tmp_path / "ends"),
        cwd=local_run,
    )  # fmt: skip
    maps = [read_volume(tmp_path / f"ends/reconstruction_{k:03d}.mrc") for k in (0, 1)]
    renders = [read_volume(tmp_path / f"ends/state_{k:03d}.mrc") for k in (0, 1)]
    pixel, box = maps[0].voxel_size_a, maps[0].box_px
    weights = _moving_domain_weights(results / "simulated", box, pixel)
    found = [centre_of_mass_a(m.data, pixel, weights) for m in maps]
    # the truth at each end: the moving atoms' centre in the mean state of its particles
    motion = truth.motion
    states = motion.positions(np.array([coordinates[end].mean() for end in ends]))
    true_shift = states[1, np.asarray(motion.moving)].mean(0) - states[0, motion.moving].mean(0)
    shift = found[1] - found[0]
    cosine = float(shift @ true_shift / (np.linalg.norm(shift) * np.linalg.norm(true_shift)))
    assert cosine > 0.8, (cosine, shift, true_shift)
    # inside the swept region the centre of mass moves less than the domain: a real part
    assert np.linalg.norm(shift) > 0.3 * np.linalg.norm(true_shift), (shift, true_shift)
    for reconstruction, render in zip(maps, renders, strict=True):
        np.testing.assert_allclose(
            centre_of_mass_a(reconstruction.data, pixel, weights),
            centre_of_mass_a(render.data, pixel, weights),
            atol=1.0,
        )


def test_trilinear_spreading_keeps_mass_and_centre() -> None:
    generator = torch.Generator().manual_seed(3)
    positions = (torch.rand(500, 3, generator=generator) - 0.5) * 20.0
    values = torch.rand(500, generator=generator, dtype=torch.float32)
    grid = spread_trilinear(positions, values, 32).double().numpy()
    assert grid.sum() == pytest.approx(float(values.sum()), rel=1e-5)
    expected = (values[:, None].double() * positions.double()).sum(0) / values.double().sum()
    centre = centre_of_mass_a(grid, 1.0) - 16.0  # back to px from the box centre
    np.testing.assert_allclose(centre, expected.numpy(), atol=1e-4)


def test_bad_points_fail_with_the_option_named(local_run: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dynamight_core",
            "explore",
            "maps",
            "--model",
            str(local_run / "results/vae/half1/model.pt"),
            "--latents",
            str(local_run / "results/vae/half1/latents.csv"),
            "--points",
            "1,2",
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--points" in result.stderr and "latent dimension" in result.stderr
    assert not list(tmp_path.iterdir())


def test_pseudo_atoms_of_a_consensus_fit(local_run: Path, tmp_path: Path) -> None:
    from dynamight_core.models.gaussians import load_gaussian_model

    path = local_run / "results/gaussians/consensus_half2.pt"
    _run(
        "explore",
        "pseudo-atoms",
        "--model",
        str(path),
        "--out-cif",
        str(tmp_path / "fit.cif"),
        "--out-pdb",
        str(tmp_path / "fit.pdb"),
        cwd=tmp_path,
    )
    model, _ = load_gaussian_model(path)
    expected = map_frame_a(
        model.positions_a().detach().double().numpy(), model.box_px, model.pixel_size_a
    )
    for name in ("fit.cif", "fit.pdb"):
        structure = gemmi.read_structure(str(tmp_path / name))
        assert len(structure) == 1
        atoms = [atom for chain in structure[0] for residue in chain for atom in residue]
        read = np.array([(a.pos.x, a.pos.y, a.pos.z) for a in atoms])
        np.testing.assert_allclose(read, expected, atol=1e-3)
        assert {a.b_iso for a in atoms} == {0.0}
