"""The latent space of a half set: principal components and the model along them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dynamight_core.data.latent_space import LatentPca, latents_along
from dynamight_core.models.deformation import DeformationModel, displacement_rms_a

__all__ = ["STEPS_SD", "displacement_rms_a", "renders_along"]

STEPS_SD = (-2.0, -1.0, 0.0, 1.0, 2.0)


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
