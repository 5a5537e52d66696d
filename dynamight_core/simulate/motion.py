"""Continuous motions with a known ground truth.

Each particle carries a motion coordinate ``s`` in [0, 1]. A hinge motion turns the moving
atoms about an axis by ``(2 s - 1) * max_angle``; an interpolation motion moves every atom
linearly from state A (s = 0) to state B (s = 1). ``s = 0.5`` is the middle state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def axis_angle_matrix(axis: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """`(..., 3, 3)` right-handed rotations by ``angle_rad`` about the unit vector ``axis``."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    angle = np.asarray(angle_rad)[..., None, None]
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


@dataclass(frozen=True)
class HingeMotion:
    """Rotation of a rigid domain about a hinge axis.

    Attributes
    ----------
    reference_a
        `(N, 3)` atom positions at ``s = 0.5`` (Å).
    moving
        `(N,)` boolean: atoms that turn.
    point_a, axis
        Hinge axis: a point (Å) and a unit direction.
    max_angle_deg
        Angle reached at ``s = 0`` and ``s = 1`` (with opposite signs).
    """

    reference_a: np.ndarray
    moving: np.ndarray
    point_a: np.ndarray
    axis: np.ndarray
    max_angle_deg: float

    def angle_deg(self, s: np.ndarray) -> np.ndarray:
        """Hinge angle (degrees) at motion coordinates ``s``."""
        return (2.0 * np.asarray(s) - 1.0) * self.max_angle_deg

    def positions(self, s: np.ndarray) -> np.ndarray:
        """`(B, N, 3)` atom positions (Å) at motion coordinates ``s`` `(B,)`."""
        rotation = axis_angle_matrix(self.axis, np.deg2rad(self.angle_deg(s)))
        relative = self.reference_a - self.point_a
        turned = np.einsum("bij,nj->bni", rotation, relative) + self.point_a
        return np.where(self.moving[None, :, None], turned, self.reference_a[None])

    def describe(self) -> dict[str, object]:
        """JSON-serialisable description of the motion."""
        return {
            "type": "hinge",
            "point_a": self.point_a.tolist(),
            "axis": self.axis.tolist(),
            "max_angle_deg": self.max_angle_deg,
            "coordinate": "angle = (2 s - 1) * max",
        }


@dataclass(frozen=True)
class InterpolationMotion:
    """Linear interpolation between two states with the same atoms."""

    state_a: np.ndarray
    state_b: np.ndarray

    @property
    def reference_a(self) -> np.ndarray:
        """Positions at ``s = 0.5``."""
        return 0.5 * (self.state_a + self.state_b)

    @property
    def moving(self) -> np.ndarray:
        """Atoms that move at all."""
        return np.linalg.norm(self.state_b - self.state_a, axis=1) > 1e-6

    def positions(self, s: np.ndarray) -> np.ndarray:
        """`(B, N, 3)` atom positions (Å) at motion coordinates ``s`` `(B,)`."""
        s = np.asarray(s, dtype=np.float64)[:, None, None]
        return self.state_a[None] + s * (self.state_b - self.state_a)[None]

    def describe(self) -> dict[str, object]:
        """JSON-serialisable description of the motion."""
        return {"type": "interpolation", "coordinate": "positions = A + s (B - A)"}


Motion = HingeMotion | InterpolationMotion


def nearest_reference(motion: Motion, points_a: np.ndarray) -> np.ndarray:
    """Index of the reference atom nearest to each point."""
    distances = torch.cdist(
        torch.as_tensor(points_a, dtype=torch.float64),
        torch.as_tensor(motion.reference_a, dtype=torch.float64),
    )
    return distances.argmin(dim=1).numpy()


def true_displacements_a(motion: Motion, points_a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Ground-truth displacement of arbitrary points from the ``s = 0.5`` state.

    A point belongs to the domain of the reference atom nearest to it. Under a hinge
    motion the points of the moving domain turn about the hinge axis themselves; under an
    interpolation a point takes the displacement of its nearest atom.

    Parameters
    ----------
    motion
        The simulated motion.
    points_a
        `(M, 3)` points in Å (e.g. fitted Gaussian centres), at the ``s = 0.5`` state.
    s
        `(B,)` motion coordinates.

    Returns
    -------
    numpy.ndarray
        `(B, M, 3)` displacements in Å.
    """
    nearest = nearest_reference(motion, points_a)
    if isinstance(motion, HingeMotion):
        rotation = axis_angle_matrix(motion.axis, np.deg2rad(motion.angle_deg(s)))
        relative = points_a - motion.point_a
        turned = np.einsum("bij,mj->bmi", rotation, relative) - relative
        return np.where(motion.moving[nearest][None, :, None], turned, 0.0)
    moved = motion.positions(s)[:, nearest, :] - motion.reference_a[nearest][None]
    return moved
