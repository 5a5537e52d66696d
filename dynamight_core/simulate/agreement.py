"""Agreement of learned deformations with a known motion (for simulated data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from dynamight_core.models.deformation import load_deformation_model
from dynamight_core.simulate.motion import Motion, nearest_reference, true_displacements_a
from dynamight_core.simulate.truth import load_truth


def first_principal_component(latents: np.ndarray) -> np.ndarray:
    """`(N,)` projection of `(N, L)` latent means on their first principal axis."""
    centred = latents - latents.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    return centred @ axes[0]


def latent_motion_correlation(latents: np.ndarray, coordinates: np.ndarray) -> float:
    """|Spearman| correlation between the first principal component and the true coordinate."""
    return float(abs(stats.spearmanr(first_principal_component(latents), coordinates)[0]))


def displacement_errors_a(
    decoded_a: np.ndarray, consensus_a: np.ndarray, motion: Motion, coordinates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Errors of decoded displacements against the true motion.

    The learned consensus sits at some state of the motion, not necessarily the middle
    one; a constant displacement per Gaussian (the offset between the two references) is
    removed before comparing.

    Parameters
    ----------
    decoded_a
        `(P, N, 3)` decoded displacements (Å) of the N consensus Gaussians for P particles.
    consensus_a
        `(N, 3)` consensus positions (Å).
    motion
        The true motion.
    coordinates
        `(P,)` true motion coordinates of the particles.

    Returns
    -------
    tuple of numpy.ndarray
        `(P, N)` error lengths (Å) and the `(N,)` mask of Gaussians in the moving domain.
    """
    truth = true_displacements_a(motion, consensus_a, coordinates)
    offset = (truth - decoded_a).mean(axis=0, keepdims=True)
    errors = np.linalg.norm(decoded_a + offset - truth, axis=-1)
    moving = motion.moving[nearest_reference(motion, consensus_a)]
    return errors, moving


def agreement_with_truth(
    latents_csv: str | Path, model_path: str | Path, simulation: str | Path
) -> dict[str, float]:
    """Compare one half set's trained VAE with a simulation's known motion.

    Parameters
    ----------
    latents_csv
        ``latents.csv`` of ``train-vae`` (refined latent means ``mu_*`` keyed by STAR row).
    model_path
        The half set's ``model.pt``.
    simulation
        The simulator's output folder (``truth.csv`` and ``truth/``).

    Returns
    -------
    dict
        ``spearman`` (|Spearman| of latent PC1 vs the true coordinate), ``amplitude_a``,
        ``median_error_a`` and ``median_error_fraction`` (moving Gaussians, offset removed),
        and ``static_rms_a`` (RMS decoded displacement of the static domain's Gaussians).
    """
    truth = load_truth(simulation)
    table = pd.read_csv(latents_csv)
    mu = table[[name for name in table.columns if name.startswith("mu_")]].to_numpy()
    coordinates = truth.coordinates[table["row"].to_numpy()]
    model, _ = load_deformation_model(model_path)
    with torch.no_grad():
        parts = torch.tensor(mu, dtype=torch.float32).split(256)
        decoded = torch.cat([model.displacements_a(part) for part in parts]).numpy()
        consensus = model.consensus.positions_a().numpy()
    errors, moving = displacement_errors_a(decoded, consensus, truth.motion, coordinates)
    median = float(np.median(errors[:, moving])) if moving.any() else 0.0
    return {
        "spearman": latent_motion_correlation(mu, coordinates),
        "amplitude_a": truth.amplitude_a,
        "median_error_a": median,
        "median_error_fraction": median / truth.amplitude_a if truth.amplitude_a else float("nan"),
        "static_rms_a": float(np.sqrt((decoded[:, ~moving] ** 2).sum(-1).mean())),
    }
