"""The half-set deformation VAEs on simulated data with a known hinge motion.

The acceptance numbers are measured on the demo run (``local_run``: box 64, 4,000
particles, SNR 0.1, a hinge of up to ±30°), which trains both halves' VAEs; the other
tests run the ``train-vae`` stage directly with few epochs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch
from workflow_tools import (
    kill_at_first_checkpoint,
    make_workdir,
    ok,
    snakemake,
    train_vae_command,
)

from dynamight_core.models.decoders import decoder_kind
from dynamight_core.models.deformation import load_deformation_model
from dynamight_core.simulate.agreement import agreement_with_truth, displacement_errors_a
from dynamight_core.simulate.truth import load_truth

pytestmark = pytest.mark.slow

# few epochs and refinement steps: enough to exercise every part of a training run
TINY = ("--max-epochs", "2", "--refine-steps", "2", "--track-steps", "1")


def _train_command(
    data: Path,
    results: Path,
    out: Path,
    *settings: str,
    checkpoint: Path | None = None,
) -> list[str]:
    return train_vae_command(
        data / "particles.star",
        results / "halves.csv",
        results / "gaussians/warmup_half1.pt",
        out,
        "--max-resolution-a",
        "8",
        "--threads",
        "2",
        *settings,
        checkpoint=checkpoint,
    )


def _same_training(first: Path, second: Path) -> None:
    a, _ = load_deformation_model(first / "model.pt")
    b, _ = load_deformation_model(second / "model.pt")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert (first / "latents.csv").read_text() == (second / "latents.csv").read_text()


@pytest.mark.parametrize("half", [1, 2])
def test_latents_and_displacements_recover_the_hinge(local_run: Path, half: int) -> None:
    results = local_run / "results"
    folder = results / f"vae/half{half}"
    agreement = agreement_with_truth(
        folder / "latents.csv", folder / "model.pt", results / "simulated"
    )
    assert agreement["spearman"] >= 0.9, agreement
    assert agreement["median_error_fraction"] <= 0.25, agreement


def test_latents_are_keyed_by_the_half_sets_star_rows(local_run: Path) -> None:
    results = local_run / "results"
    halves = pd.read_csv(results / "halves.csv")
    star_names = pd.read_csv(results / "simulated/truth.csv")["rlnImageName"].to_numpy()
    for half in (1, 2):
        table = pd.read_csv(results / f"vae/half{half}/latents.csv")
        assert set(table["row"]) == set(np.flatnonzero(halves["half"].to_numpy() == half))
        assert (table["rlnImageName"].to_numpy() == star_names[table["row"]]).all()
        assert 0.05 < table["validation"].mean() < 0.15
        sigmas = table[[name for name in table.columns if name.startswith("sigma_")]]
        assert sigmas.shape[1] == 6 and (sigmas.to_numpy() > 0).all()
        history = pd.read_csv(results / f"vae/half{half}/training.tsv", sep="\t")
        assert history["validation"].iloc[-1] < history["validation"].iloc[0]


def test_half_set_disagreement_tracks_the_true_error(local_run: Path) -> None:
    """The cross-half estimate is smaller than the motion and within 3x of the true error.

    Both halves shrink the motion alike (a shared bias the two halves cannot see), so the
    disagreement / sqrt(2) underestimates the true error; it must not do so grossly.
    """
    results = local_run / "results"
    summary = json.loads((results / "vae/deformation_error.json").read_text())
    per_particle = pd.read_csv(results / "vae/deformation_error.tsv", sep="\t")
    assert summary["validation_particles"] == len(per_particle) > 300
    assert 0.0 < summary["median_error_a"] < summary["median_motion_a"], summary
    truth = load_truth(results / "simulated")
    table = pd.read_csv(results / "vae/half1/latents.csv").set_index("row")
    rows = per_particle["row"][np.isin(per_particle["row"], table.index)].to_numpy()
    model, _ = load_deformation_model(results / "vae/half1/model.pt")
    mu = torch.tensor(table.loc[rows].filter(regex=r"^mu_").to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        decoded = model.displacements_a(mu).numpy()
        consensus = model.consensus.positions_a().numpy()
    errors, _ = displacement_errors_a(decoded, consensus, truth.motion, truth.coordinates[rows])
    true_rms_a = float(np.median(np.sqrt((errors**2).mean(axis=1))))
    estimate_a = summary["median_error_a"] / np.sqrt(2)
    assert true_rms_a / 3 < estimate_a < 3 * true_rms_a, (estimate_a, true_rms_a)


def test_no_motion_dataset_gives_no_displacements(tmp_path: Path) -> None:
    """Without motion, decoded displacements stay under 0.5 px RMS, the deformed map
    invents nothing (its FSC to the truth is the consensus's within 1%, or better) and the
    report answers no to both questions (the negative control): the motion is below what
    the data resolve, and the deformed map is then the consensus."""
    workdir = make_workdir(tmp_path)
    (workdir / "still.yaml").write_text(
        "simulate: {motion: none, n_particles: 2000, seed: 5}\nvae: {max_epochs: 6}\n"
    )
    target = "results/vae/half1/latents.csv"
    configfiles = ("config.yaml", "ci.yaml", "still.yaml")
    ok(snakemake(workdir, "--cores", "2", configfiles=configfiles))
    summary = json.loads((workdir / "results/deformed/fsc.json").read_text())
    deformed = summary["deformed"]["full_vs_state_area"]
    consensus = summary["consensus"]["full_vs_state_area"]
    assert deformed > 0.99 * consensus, (deformed, consensus)
    report = json.loads((workdir / "results/summary.json").read_text())
    answers = report["gain"]["answers"]
    assert report["gain"]["significant"] is False, report["gain"]
    assert answers["motion_real"]["answer"] == "no", answers
    assert answers["map_better"]["answer"] == "no", answers
    assert "Is the motion real? no" in (workdir / "results/report.html").read_text()
    model, _ = load_deformation_model(workdir / "results/vae/half1/model.pt")
    table = pd.read_csv(workdir / target)
    mu = torch.tensor(table.filter(regex=r"^mu_").to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        displacements_a = model.displacements_a(mu)
    rms_px = float(displacements_a.pow(2).sum(-1).mean().sqrt()) / 2.0  # demo: 2 Å/px
    assert rms_px < 0.5


def test_training_never_reads_the_other_half(local_run: Path, tmp_path: Path) -> None:
    results = local_run / "results"
    data = tmp_path / "data"
    shutil.copytree(results / "simulated", data)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    subprocess.run(_train_command(data, results, tmp_path / "a", *TINY), check=True)
    halves = pd.read_csv(results / "halves.csv")["half"].to_numpy()
    other = np.flatnonzero(halves == 2)
    with mrcfile.open(data / "particles.mrcs", mode="r+") as mrc:
        noise = np.random.default_rng(0).standard_normal((len(other), *mrc.data.shape[1:]))
        mrc.data[other] = noise.astype(np.float32)
    subprocess.run(_train_command(data, results, tmp_path / "b", *TINY), check=True)
    _same_training(tmp_path / "a", tmp_path / "b")


def test_the_basis_decoder_is_read_from_the_model_file(local_run: Path, tmp_path: Path) -> None:
    """``vae.decoder: basis`` trains the basis decoder, says so in the model file, and a
    later stage reads it from the file alone (explore movie; the demo ran ``mlp``)."""
    results = local_run / "results"
    out = tmp_path / "basis"
    out.mkdir()
    command = _train_command(results / "simulated", results, out, *TINY, "--decoder", "basis")
    subprocess.run(command, check=True)
    model, _ = load_deformation_model(out / "model.pt")
    default, _ = load_deformation_model(results / "vae/half1/model.pt")
    assert decoder_kind(model.decoder) == "basis"
    assert decoder_kind(default.decoder) == "mlp"
    movie = tmp_path / "movie"
    command = [sys.executable, "-m", "dynamight_core", "explore", "movie"]
    command += ["--model", str(out / "model.pt"), "--latents", str(out / "latents.csv")]
    command += ["--movie-frames", "3", "--out-dir", str(movie)]
    command += ["--out-animation", str(movie / "movie.gif")]
    ok(subprocess.run(command, capture_output=True, text=True))
    assert len(list(movie.glob("frame_*.mrc"))) == 3


def test_killed_training_resumes_with_identical_model(local_run: Path, tmp_path: Path) -> None:
    results = local_run / "results"
    data = results / "simulated"
    settings = (*TINY[2:], "--max-epochs", "3", "--consensus-update-every", "1")
    for name in ("reference", "killed"):
        (tmp_path / name).mkdir()
    subprocess.run(_train_command(data, results, tmp_path / "reference", *settings), check=True)
    checkpoint = tmp_path / "killed/checkpoint"
    command = _train_command(data, results, tmp_path / "killed", *settings, checkpoint=checkpoint)
    kill_at_first_checkpoint(command, checkpoint / "vae.pt")
    assert not (tmp_path / "killed/model.pt").exists()
    resumed = subprocess.run(command, check=True, capture_output=True, text=True)
    assert "resuming from checkpoint: epoch 2" in resumed.stderr
    _same_training(tmp_path / "reference", tmp_path / "killed")
    assert not checkpoint.exists()


def test_bond_graph_from_a_docked_atomic_model(local_run: Path, tmp_path: Path) -> None:
    """The demo's pseudo-atoms as a PDB docked in the map: training uses its bonds, warns."""
    import gemmi

    results = local_run / "results"
    atoms = pd.read_csv(results / "simulated/truth/atoms.csv")
    corner_to_centre_a = 32 * 2.0  # demo: box 64 at 2 Å/px
    structure, model = gemmi.Structure(), gemmi.Model("1")
    for domain, group in atoms.groupby("moving"):
        chain = gemmi.Chain("AB"[int(domain)])
        for number, (x_a, y_a, z_a) in enumerate(group[["x_a", "y_a", "z_a"]].to_numpy()):
            residue = gemmi.Residue()
            residue.name, residue.seqid = "GLY", gemmi.SeqId(number + 1, " ")
            atom = gemmi.Atom()
            atom.name, atom.element = "CA", gemmi.Element("C")
            atom.pos = gemmi.Position(*(np.array([x_a, y_a, z_a]) + corner_to_centre_a))
            residue.add_atom(atom)
            chain.add_residue(residue)
        model.add_chain(chain)
    structure.add_model(model)
    structure.write_pdb(str(tmp_path / "docked.pdb"))
    command = _train_command(results / "simulated", results, tmp_path, "--max-epochs", "1")
    command += ["--refine-steps", "1", "--atomic-model", str(tmp_path / "docked.pdb")]
    finished = subprocess.run(command, check=True, capture_output=True, text=True)
    assert "biases the motions" in finished.stderr
    assert "bond graph from" in finished.stderr
    assert (tmp_path / "model.pt").exists()
