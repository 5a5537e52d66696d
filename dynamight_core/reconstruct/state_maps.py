"""Improved half maps of a chosen conformation (a state along the motion), both halves.

A state is a point of a half set's latent space: the ``p``-th percentile of its particles'
scores on a principal component, the component oriented as half 1's
(:mod:`~dynamight_core.data.latent_alignment`), so that ``p`` names the same end of the
motion in both halves. Each half reconstructs all of its particles directly in that state:
its :class:`~.reference_state.ReferenceState` puts the pseudo-atoms where the half's
decoder puts them at the state's latent, and the deformed backprojection brings every
particle there (no resampling of a map, no blur). The two half maps of a state are
independent as the half maps of the reference state are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dynamight_core.data.latent_alignment import DirectionAlignment, align_directions
from dynamight_core.data.latent_space import LatentPca, latents_at_percentiles
from dynamight_core.models.deformation import DeformationModel
from dynamight_core.reconstruct.reference_state import (
    SMOOTHING_OF_SPACING,
    ReferenceState,
    state_with,
)

# percentiles of a component between which a direction's displacement field is decoded
FIELD_PERCENTILES = (5.0, 95.0)


@torch.no_grad()
def direction_field_a(model: DeformationModel, pca: LatentPca, component: int = 0) -> np.ndarray:
    """`(N, 3)` displacement (Å) of each pseudo-atom from the low to the high end of a component.

    The ends are the particles' :data:`FIELD_PERCENTILES` of the component's scores.
    """
    ends = latents_at_percentiles(pca, component, FIELD_PERCENTILES)
    device = model.consensus.positions.device
    moved = model.deformed_positions_a(torch.as_tensor(ends, dtype=torch.float32, device=device))
    return (moved[1] - moved[0]).double().cpu().numpy()


def align_half_directions(
    models: tuple[DeformationModel, DeformationModel],
    pcas: tuple[LatentPca, LatentPca],
    control_grid: int,
    component: int = 0,
) -> DirectionAlignment:
    """Orient half 2's component as half 1's by their decoded displacement fields.

    Each half's field is decoded at its own consensus positions (both halves' models live
    in the one consensus frame) and compared on the pseudo-atoms of both.
    """
    one, two = (direction_field_a(m, p, component) for m, p in zip(models, pcas, strict=True))
    where = [m.consensus.positions_a().detach().double().cpu().numpy() for m in models]
    box_a = float(models[0].consensus.box_a)
    width = SMOOTHING_OF_SPACING * box_a / (control_grid - 1)
    return align_directions((where[0], where[1]), (one, two), width, component)


def state_latents(
    pca: LatentPca, component: int, sign: int, percentiles: Sequence[float]
) -> np.ndarray:
    """`(S, L)` latents at ``percentiles`` of the half's scores on ``component`` times ``sign``.

    With ``sign`` -1 the half's direction is reversed, so that a percentile names the same
    end of the motion as in the half it was aligned to.
    """
    flipped = [100.0 - p if sign < 0 else p for p in percentiles]
    return latents_at_percentiles(pca, component, flipped)


def state_reference(
    model: DeformationModel,
    latent: np.ndarray,
    mean_a: torch.Tensor,
    fit_a: torch.Tensor,
    control_grid: int,
) -> ReferenceState:
    """The reference state at one latent point: the pseudo-atoms where the decoder puts them.

    Parameters
    ----------
    model
        The half's trained model.
    latent
        `(L,)` the state's latent point.
    mean_a
        `(N, 3)` the half's mean deformed state (Å; kept in the record, the same for every
        state: :func:`~.reference_state.mean_positions_a` once per half).
    fit_a
        `(N, 3)` the half's consensus fit (Å).
    control_grid
        Nodes per axis of the control grid (sets the kernel width).
    """
    device = model.consensus.positions.device
    point = torch.as_tensor(np.asarray(latent)[None], dtype=torch.float32, device=device)
    with torch.no_grad():
        positions = model.deformed_positions_a(point)[0]
    return state_with("state", positions, model, mean_a, fit_a, control_grid)
