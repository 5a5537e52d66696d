"""Known motions of the benchmark datasets, and how well a trained model recovers them.

``demo_truth`` (the project simulator's ``simulated/`` folder) and ``t4l_truth`` (a
``deformed_data.py`` cryoJAX dataset: hinge angles, atoms turned about the hinge, each
pseudo-atom moving as its nearest atom) give, for STAR rows and consensus positions, the
true motion coordinate and the true displacements; ``scores`` compares a model's decoded
displacements at given latents with them (``bench_epochs.py``, ``bench_deformed.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from dynamight_core.simulate.agreement import first_principal_component

Truth = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def demo_truth(run: Path) -> Truth:
    """(STAR rows, consensus Å) -> (true coordinates, `(P, N, 3)` true displacements Å)."""
    from dynamight_core.simulate.motion import true_displacements_a
    from dynamight_core.simulate.truth import load_truth

    truth = load_truth(run / "simulated")

    def of(rows: np.ndarray, consensus_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coordinates = truth.coordinates[rows]
        return coordinates, true_displacements_a(truth.motion, consensus_a, coordinates)

    return of


def t4l_truth(data: Path) -> Truth:
    """The same for a ``deformed_data.py`` dataset (hinge angle, atoms about the hinge)."""
    from deformed_data import (
        HINGE_RESIDUES,
        MAX_ANGLE_DEG,
        MOVING_RESIDUES,
        STRUCTURE,
        WIDTH_A,
        load_structure,
    )
    from scipy.spatial import cKDTree

    structure = load_structure(
        STRUCTURE, MOVING_RESIDUES, HINGE_RESIDUES, WIDTH_A, open_offset_deg=MAX_ANGLE_DEG
    )
    theta = pd.read_csv(data / "motion.csv")["theta_deg"].to_numpy()
    mid = structure.positions_at(0.0).reshape(-1, 3)

    def of(rows: np.ndarray, consensus_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nearest = cKDTree(mid).query(consensus_a)[1]
        moved = structure.positions_at(theta[rows]).reshape(len(rows), -1, 3)
        return theta[rows], moved[:, nearest] - mid[nearest][None]

    return of


def scores(model: Any, latents: torch.Tensor, rows: np.ndarray, truth: Truth) -> dict[str, float]:
    """Latent and motion accuracy of ``model`` at the validation ``latents`` `(P, L)`."""
    with torch.no_grad():
        decoded = model.displacements_a(latents.to(model.consensus.positions.device)).cpu()
        consensus = model.consensus.positions_a().cpu().numpy()
    coordinates, true_a = truth(rows, consensus)
    decoded_a = decoded.numpy()
    offset = (true_a - decoded_a).mean(axis=0, keepdims=True)
    errors = np.linalg.norm(decoded_a + offset - true_a, axis=-1)
    amplitude = np.linalg.norm(true_a - true_a.mean(0, keepdims=True), axis=-1)
    moving = amplitude.mean(0) > 0.5 * amplitude.mean(0).max()
    values = latents.numpy()
    best = max(abs(stats.spearmanr(values[:, d], coordinates)[0]) for d in range(values.shape[1]))
    return {
        "spearman_pc1": float(
            abs(stats.spearmanr(first_principal_component(values), coordinates)[0])
        ),
        "spearman_best": float(best),
        "error_fraction": float(
            np.median(errors[:, moving]) / np.percentile(amplitude[:, moving], 95)
        ),
        "static_rms_a": float(np.sqrt((decoded_a[:, ~moving] ** 2).sum(-1).mean())),
    }


def latent_scores(run: Path, data: Path) -> dict[str, dict[str, float]]:
    """Per half set of a finished T4L workflow run: its exported latents and model against
    the truth (``scores`` over every particle of the half)."""
    from dynamight_core.models.deformation import load_deformation_model

    truth = t4l_truth(data)
    result = {}
    for half in (1, 2):
        table = pd.read_csv(run / "vae" / f"half{half}" / "latents.csv")
        latents = torch.tensor(
            table[[c for c in table.columns if c.startswith("mu_")]].to_numpy(), dtype=torch.float32
        )
        model, _ = load_deformation_model(run / "vae" / f"half{half}" / "model.pt")
        result[f"half{half}"] = scores(model, latents, table["row"].to_numpy(), truth)
    return result
