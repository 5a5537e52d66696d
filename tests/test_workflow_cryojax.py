"""The whole workflow, as shipped, on a RELION dataset that cryoJAX rendered (not our simulator).

A user's first run meets images from another simulator (or a microscope), a pixel size that
float32 cannot hold and a STAR file we did not write. This runs every stage on such data
with the shipped config.yaml (plus a small overlay that points at the data and shortens
training), and checks the physics that must hold whatever the code: the half maps agree
with each other as much as the full map agrees with the true map, and every number
written is finite.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cryojax_data import write_cryojax_dataset
from workflow_tools import make_workdir, ok, snakemake

from dynamight_core.io.mrc import read_volume

pytestmark = pytest.mark.slow

PIXEL_SIZE_A = 1.8


@pytest.fixture(scope="module")
def cryojax_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workflow run end to end on 1,200 cryoJAX particles at SNR 0.1 (box 64, 1.8 Å)."""
    root = tmp_path_factory.mktemp("cryojax_run")
    data = write_cryojax_dataset(
        root / "relion", n_particles=1200, pixel_size_a=PIXEL_SIZE_A, snr=0.1, seed=11
    )
    workdir = make_workdir(root / "run")
    (workdir / "cryojax.yaml").write_text(
        f"inputs: {{particles: {data.star}, mask: null, reference_map: {data.truth},"
        f" reference_state: {data.truth}}}\n"
        "gaussians: {n_gaussians: 300, n_residues: null, iterations: 150}\n"
        "warmup: {epochs: 1, noise_particles: 300}\n"
        "vae: {max_epochs: 2}\n"
        "report: {null_control: false}\n"  # the null's jobs are the same rules
    )
    ok(snakemake(workdir, "--cores", "2", configfiles=("config.yaml", "ci.yaml", "cryojax.yaml")))
    return workdir


def test_every_stage_runs_at_a_pixel_size_float32_cannot_hold(cryojax_run: Path) -> None:
    results = cryojax_run / "results"
    header = read_volume(results / "consensus" / "half1.mrc").voxel_size_a
    assert header != PIXEL_SIZE_A and math.isclose(header, PIXEL_SIZE_A, rel_tol=1e-6)
    for half in (1, 2):
        assert (results / "gaussians" / f"warmup_half{half}.pt").is_file()
        latents = pd.read_csv(results / "vae" / f"half{half}" / "latents.csv")
        assert np.isfinite(latents.filter(like="mu_").to_numpy()).all()
    names = ("consensus/fsc.json", "vae/deformation_error.json", "deformed/fsc.json")
    for name in (*names, "provenance.json"):
        text = (results / name).read_text()
        assert "NaN" not in text and "Infinity" not in text, name


def test_half_maps_predict_the_agreement_with_the_true_map(cryojax_run: Path) -> None:
    """``sqrt(2 FSC / (1 + FSC))`` of the halves is what the full map must reach against truth.

    A wrong convention (pose, origin, CTF) makes both halves wrong in the same way: they
    still agree with each other, but not with the true map.
    """
    results = cryojax_run / "results" / "consensus"
    table = pd.read_csv(results / "fsc.tsv", sep="\t")
    summary = json.loads((results / "fsc.json").read_text())
    resolution_a = summary["resolution_0143_a"]
    assert 2 * PIXEL_SIZE_A <= resolution_a < 12.0
    informative = table[(table["shell"] > 0) & (table["expected_from_halves"] > 0.5)]
    assert len(informative) >= 8
    shortfall = informative["expected_from_halves"] - informative["fsc_full_vs_reference"]
    assert shortfall.max() < 0.1, informative.to_string()
