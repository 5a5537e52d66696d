"""Built-in two-domain particle: helix bundles packed in two ellipsoids.

Each pseudo-atom stands for one residue of an alpha helix (rise 1.5 Å, radius 2.3 Å,
100° per residue); helices run parallel to one axis on a hexagonal lattice (9.5 Å
spacing) clipped to the domain's ellipsoid. Domain 0 (the body) is centred at
``(-19, 0, 0)`` Å, domain 1 (the arm, almost as large) at ``(+21, 0, 0)`` Å with helices
running along x; the hinge axis is y, through ``(+1, 0, 0)`` Å. Coordinates are relative to
the box centre. The particle spans about 75 x 35 x 35 Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HELIX_RISE_A = 1.5
HELIX_RADIUS_A = 2.3
HELIX_TWIST_RAD = np.deg2rad(100.0)
HELIX_SPACING_A = 9.5


@dataclass(frozen=True)
class Phantom:
    """Pseudo-atoms of a particle, with domains and a hinge.

    Attributes
    ----------
    positions_a
        `(N, 3)` pseudo-atom centres (x, y, z) in Å relative to the box centre.
    masses
        `(N,)` relative masses.
    domains
        `(N,)` domain label per pseudo-atom (0: fixed, 1: moving).
    hinge_point_a, hinge_axis
        `(3,)` a point on the hinge axis (Å) and its unit direction.
    """

    positions_a: np.ndarray
    masses: np.ndarray
    domains: np.ndarray
    hinge_point_a: np.ndarray
    hinge_axis: np.ndarray


def _helix_bundle(
    centre_a: np.ndarray, radii_a: np.ndarray, axis: int, phase_seed: int
) -> np.ndarray:
    """Residue positions of parallel helices filling an ellipsoid; helices run along ``axis``."""
    rng = np.random.default_rng(phase_seed)
    across = [a for a in range(3) if a != axis]
    span = radii_a[across].max()
    rows = np.arange(-span, span + HELIX_SPACING_A, HELIX_SPACING_A * np.sqrt(3) / 2)
    points = []
    for row_number, v in enumerate(rows):
        offset = HELIX_SPACING_A / 2 * (row_number % 2)
        for u in np.arange(-span - offset, span + HELIX_SPACING_A, HELIX_SPACING_A) + offset:
            inside = (u / radii_a[across[0]]) ** 2 + (v / radii_a[across[1]]) ** 2
            if inside >= 1.0:
                continue
            half_length = radii_a[axis] * np.sqrt(1.0 - inside)
            steps = np.arange(-half_length, half_length, HELIX_RISE_A)
            phase = rng.uniform(0, 2 * np.pi) + HELIX_TWIST_RAD * np.arange(len(steps))
            helix = np.zeros((len(steps), 3))
            helix[:, axis] = steps
            helix[:, across[0]] = u + HELIX_RADIUS_A * np.cos(phase)
            helix[:, across[1]] = v + HELIX_RADIUS_A * np.sin(phase)
            points.append(helix)
    return np.concatenate(points) + centre_a


def two_domain_phantom(seed: int = 0) -> Phantom:
    """The built-in two-domain particle (about 380 pseudo-atoms, 43% of them moving)."""
    body = _helix_bundle(
        np.array([-19.0, 0.0, 0.0]), np.array([20.0, 17.0, 17.0]), axis=2, phase_seed=seed
    )
    arm = _helix_bundle(
        np.array([21.0, 0.0, 0.0]), np.array([19.0, 16.0, 16.0]), axis=0, phase_seed=seed + 1
    )
    positions = np.concatenate([body, arm])
    domains = np.concatenate([np.zeros(len(body), dtype=np.int64), np.ones(len(arm), np.int64)])
    return Phantom(
        positions_a=positions,
        masses=np.ones(len(positions)),
        domains=domains,
        hinge_point_a=np.array([1.0, 0.0, 0.0]),
        hinge_axis=np.array([0.0, 1.0, 0.0]),
    )
