"""The half set's model at chosen latent points: pseudo-atom positions and density maps."""

from __future__ import annotations

import numpy as np
import torch

from dynamight_core.models.deformation import DeformationModel


@torch.no_grad()
def state_positions_a(model: DeformationModel, latents: np.ndarray, batch: int = 64) -> np.ndarray:
    """`(S, N, 3)` pseudo-atom centres (x, y, z; Å from the box centre) at `(S, L)` latents."""
    device = model.consensus.positions.device
    chunks = []
    for start in range(0, len(latents), batch):
        z = torch.as_tensor(latents[start : start + batch], dtype=torch.float32, device=device)
        chunks.append(model.deformed_positions_a(z).double().cpu().numpy())
    return np.concatenate(chunks)


@torch.no_grad()
def render_states(model: DeformationModel, latents: np.ndarray, batch: int = 4) -> np.ndarray:
    """`(S, D, D, D)` float32 maps (z, y, x) of the model at `(S, L)` latents.

    Rendered on the consensus map's grid (box and voxel size of the particles), so that the
    maps overlay the consensus and the deformed reconstructions.
    """
    device = model.consensus.positions.device
    maps = []
    for start in range(0, len(latents), batch):
        z = torch.as_tensor(latents[start : start + batch], dtype=torch.float32, device=device)
        volumes = model.consensus.volume(model.deformed_positions_a(z))
        maps.append(volumes.float().cpu().numpy())
    return np.concatenate(maps)


def map_frame_a(positions_a: np.ndarray, box_px: int, pixel_size_a: float) -> np.ndarray:
    """Positions (Å from the box centre) in the frame of our MRC maps (origin 0, Å).

    Voxel ``i`` of a map written with origin 0 is at ``i * pixel_size_a``; the box centre
    is voxel ``box_px // 2``. ChimeraX and Coot place the maps and the pseudo-atoms alike.
    """
    return np.asarray(positions_a, dtype=np.float64) + (box_px // 2) * pixel_size_a


def centre_of_mass_a(
    volume: np.ndarray, pixel_size_a: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """`(3,)` centre of mass (x, y, z; Å, map frame) of the positive part of a `(D, D, D)` map.

    ``weights`` (same shape, 0..1) restricts it to a region, e.g. one domain.
    """
    density = np.clip(np.asarray(volume, dtype=np.float64), 0.0, None)
    if weights is not None:
        density = density * weights
    total = density.sum()
    if total <= 0:
        raise ValueError("the map has no positive density in the region")
    z, y, x = np.indices(density.shape, dtype=np.float64)
    return np.array([(c * density).sum() / total for c in (x, y, z)]) * pixel_size_a
