"""The latent space of a half set: principal components and the model along them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.models.deformation import DeformationModel

STEPS_SD = (-2.0, -1.0, 0.0, 1.0, 2.0)


@dataclass(frozen=True)
class LatentPca:
    """Principal components of a half set's latent means.

    Attributes
    ----------
    mean
        `(L,)` mean latent.
    axes
        `(L, L)` principal directions, one per row, by decreasing variance.
    sd
        `(L,)` standard deviation of the latents along each direction.
    explained
        `(L,)` fraction of the total variance along each direction.
    scores
        `(P, L)` each particle's coordinates on the directions.
    """

    mean: np.ndarray
    axes: np.ndarray
    sd: np.ndarray
    explained: np.ndarray
    scores: np.ndarray


def latent_pca(latents: np.ndarray) -> LatentPca:
    """PCA (by SVD of the centred matrix) of `(P, L)` latent means, P >= 2."""
    values = np.asarray(latents, dtype=np.float64)
    mean = values.mean(axis=0)
    centred = values - mean
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2 / (len(values) - 1)
    total = max(float(variance.sum()), 1e-30)
    # a deterministic sign: each direction's largest component positive
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes = axes * signs[:, None]
    return LatentPca(mean, axes, np.sqrt(variance), variance / total, centred @ axes.T)


def latents_along(pca: LatentPca, component: int, steps_sd: Sequence[float]) -> np.ndarray:
    """`(S, L)` latents at ``steps_sd`` standard deviations along one principal direction."""
    offsets = np.asarray(steps_sd)[:, None] * pca.sd[component] * pca.axes[component][None]
    return pca.mean[None] + offsets


@torch.no_grad()
def renders_along(
    model: DeformationModel, pca: LatentPca, steps_sd: Sequence[float] = STEPS_SD
) -> tuple[np.ndarray, str]:
    """`(2, S, D, D)` the deformed model projected at steps along PC1 and PC2, and the axis.

    The projection runs along the axis (x, y or z) in which PC1 moves the pseudo-atoms
    least, so that its motion lies in the image plane.
    """
    device = model.consensus.positions.device
    positions = []
    for component in range(min(2, len(pca.sd))):
        z = torch.as_tensor(latents_along(pca, component, steps_sd), dtype=torch.float32)
        positions.append(model.deformed_positions_a(z.to(device)))
    sweep = (positions[0][-1] - positions[0][0]).pow(2).sum(dim=0)  # (3,) over x, y, z
    along = int(sweep.argmin())
    rows = [model.consensus.volume(p).sum(dim=3 - along).cpu().numpy() for p in positions]
    if len(rows) == 1:
        rows.append(np.zeros_like(rows[0]))
    return np.stack(rows), "xyz"[along]


@torch.no_grad()
def displacement_rms_a(
    model: DeformationModel, latents: np.ndarray, batch: int = 256
) -> np.ndarray:
    """`(N,)` each Gaussian's RMS displacement (Å) about its mean over the given latents."""
    device = model.consensus.positions.device
    total = None
    square = None
    for start in range(0, len(latents), batch):
        z = torch.as_tensor(latents[start : start + batch], dtype=torch.float32, device=device)
        shifts = model.displacements_a(z).double()
        total = shifts.sum(0) if total is None else total + shifts.sum(0)
        square = (shifts**2).sum(0) if square is None else square + (shifts**2).sum(0)
    assert total is not None and square is not None
    count = len(latents)
    variance = (square / count - (total / count) ** 2).sum(-1).clamp(min=0.0)
    return variance.sqrt().cpu().numpy()
