"""RELION's rotation and origin conventions. This is the only module that defines them.

Conventions (RELION 3.1+):

* ``A = euler_to_matrix(rot, tilt, psi)`` equals RELION's ``Euler_angles2matrix``: ZYZ Euler
  angles in degrees, ``A = R_z(psi) R_y(tilt) R_z(rot)`` with rotations of the coordinate
  frame. A model point ``r = (x, y, z)`` (Å, relative to the box centre) appears in the
  particle image at ``(A r)_xy``. In Fourier space the image is the central slice of the
  volume's transform at ``A^T (k_x, k_y, 0)``.
* Libraries such as torch-fourier-slice and torch-projectors take ``A^T``.
* The particle's centre sits at the box centre minus ``(rlnOriginXAngst, rlnOriginYAngst)``;
  shifting the image by ``+origin`` centres the particle. Here the image-plane position of
  the particle centre relative to the box centre is called the *shift*: ``shift = -origin``.
* Coordinates are ordered (x, y, z); arrays are indexed (z, y, x); the box centre is at
  index ``D // 2``.
"""

from __future__ import annotations

import torch


def euler_to_matrix(euler_deg: torch.Tensor) -> torch.Tensor:
    """RELION's ``Euler_angles2matrix`` for a batch of (rot, tilt, psi) angles.

    Parameters
    ----------
    euler_deg
        `(..., 3)` angles (rot, tilt, psi) in degrees.

    Returns
    -------
    torch.Tensor
        `(..., 3, 3)` matrices ``A`` such that a point ``r`` projects to ``(A r)_xy``.
    """
    rot, tilt, psi = torch.deg2rad(euler_deg).unbind(-1)
    ca, sa = torch.cos(rot), torch.sin(rot)
    cb, sb = torch.cos(tilt), torch.sin(tilt)
    cg, sg = torch.cos(psi), torch.sin(psi)
    cc, cs = cb * ca, cb * sa
    sc, ss = sb * ca, sb * sa
    row0 = torch.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], dim=-1)
    row1 = torch.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], dim=-1)
    row2 = torch.stack([sc, ss, cb], dim=-1)
    return torch.stack([row0, row1, row2], dim=-2)


def matrix_to_euler(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`euler_to_matrix` (RELION's ``Euler_matrix2angles``).

    Parameters
    ----------
    matrix
        `(..., 3, 3)` rotation matrices ``A``.

    Returns
    -------
    torch.Tensor
        `(..., 3)` angles (rot, tilt, psi) in degrees; tilt in [0, 180].
    """
    a = matrix
    sin_tilt = torch.sqrt(a[..., 0, 2] ** 2 + a[..., 1, 2] ** 2)
    tilt = torch.atan2(sin_tilt, a[..., 2, 2])
    regular = sin_tilt > 1e-6
    rot = torch.where(regular, torch.atan2(a[..., 2, 1], a[..., 2, 0]), torch.zeros_like(tilt))
    psi = torch.where(
        regular,
        torch.atan2(a[..., 1, 2], -a[..., 0, 2]),
        torch.atan2(-a[..., 1, 0], a[..., 0, 0]),
    )
    return torch.rad2deg(torch.stack([rot, tilt, psi], dim=-1))


def project_points(positions_a: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Image-plane coordinates of 3D points: ``(A r)_xy``.

    Parameters
    ----------
    positions_a
        `(N, 3)` or `(B, N, 3)` points (x, y, z) in Å relative to the box centre.
    matrices
        `(B, 3, 3)` RELION matrices ``A``.

    Returns
    -------
    torch.Tensor
        `(B, N, 2)` image coordinates (x, y) in Å relative to the box centre.
    """
    return torch.matmul(positions_a, matrices[:, :2, :].transpose(-1, -2))


def shift_from_origin(origin_a: torch.Tensor) -> torch.Tensor:
    """Position of the particle centre relative to the box centre, from RELION's origin.

    Parameters
    ----------
    origin_a
        `(..., 2)` ``(rlnOriginXAngst, rlnOriginYAngst)`` in Å.

    Returns
    -------
    torch.Tensor
        `(..., 2)` image-plane shift (x, y) in Å: ``-origin``.
    """
    return -origin_a
