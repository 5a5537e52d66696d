"""Per-particle metadata of a :class:`~dynamight_core.io.star.ParticleSet` as tensors.

The STAR reader keeps the metadata as numpy arrays in physical units; these functions
turn the rows of a batch into the rotation matrices, shifts and CTF parameters the
physics and models work with.
"""

from __future__ import annotations

import numpy as np
import torch

from dynamight_core.geometry.rotations import euler_to_matrix, shift_from_origin
from dynamight_core.io.star import ParticleSet
from dynamight_core.physics.ctf import CtfParameters


def particle_rotations(
    particle_set: ParticleSet, indices: np.ndarray, device: torch.device | None = None
) -> torch.Tensor:
    """`(B, 3, 3)` RELION matrices ``A`` of the particles ``indices``."""
    return euler_to_matrix(torch.as_tensor(particle_set.euler_deg[indices], device=device)).float()


def particle_shifts_a(
    particle_set: ParticleSet, indices: np.ndarray, device: torch.device | None = None
) -> torch.Tensor:
    """`(B, 2)` particle-centre positions relative to the box centre in Å (``-origin``)."""
    origin = torch.as_tensor(particle_set.origin_a[indices], device=device).float()
    return shift_from_origin(origin)


def particle_ctf_parameters(
    particle_set: ParticleSet, indices: np.ndarray, device: torch.device | None = None
) -> CtfParameters:
    """CTF parameters of the particles ``indices`` as tensors of shape `(B,)`."""

    def take(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values[indices], dtype=torch.float64, device=device)

    return CtfParameters(
        defocus_u_a=take(particle_set.defocus_u_a),
        defocus_v_a=take(particle_set.defocus_v_a),
        defocus_angle_deg=take(particle_set.defocus_angle_deg),
        voltage_kv=take(particle_set.voltage_kv),
        cs_mm=take(particle_set.cs_mm),
        amplitude_contrast=take(particle_set.amplitude_contrast),
        phase_shift_deg=take(particle_set.phase_shift_deg),
        bfactor_a2=take(particle_set.bfactor_a2),
        scale=take(particle_set.ctf_scale),
    )
