"""RELION rotation and origin conventions, pinned by hand-checked cases and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dynamight_core.geometry.rotations import (
    euler_to_matrix,
    matrix_to_euler,
    project_points,
    shift_from_origin,
)


def _passive_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def _passive_y(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


@pytest.mark.parametrize(
    ("euler", "expected"),
    [
        # rot = 90: the frame turns +90° about z, so the x axis shows up at -y in the image
        ((90.0, 0.0, 0.0), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]),
        # tilt = 90: z ends up along -x of the image, x along +z (out of the image)
        ((0.0, 90.0, 0.0), [[0, 0, -1], [0, 1, 0], [1, 0, 0]]),
        ((0.0, 0.0, 90.0), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]),
    ],
)
def test_hand_checked_matrices(euler: tuple[float, float, float], expected: list) -> None:
    matrix = euler_to_matrix(torch.tensor(euler, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(matrix, np.array(expected, dtype=float), atol=1e-12)


def test_general_angles_are_psi_tilt_rot_product() -> None:
    rot, tilt, psi = 30.0, 40.0, 50.0
    expected = _passive_z(psi) @ _passive_y(tilt) @ _passive_z(rot)
    matrix = euler_to_matrix(torch.tensor([rot, tilt, psi], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(matrix, expected, atol=1e-12)


def test_matches_scipy_intrinsic_zyz_transposed() -> None:
    rng = np.random.default_rng(0)
    angles = rng.uniform([-180, 0, -180], [180, 180, 180], size=(50, 3))
    ours = euler_to_matrix(torch.as_tensor(angles)).numpy()
    theirs = Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix()
    np.testing.assert_allclose(ours, np.transpose(theirs, (0, 2, 1)), atol=1e-12)


def test_euler_round_trip() -> None:
    rng = np.random.default_rng(1)
    angles = torch.as_tensor(rng.uniform([-180, 1, -180], [180, 179, 180], size=(100, 3)))
    back = euler_to_matrix(matrix_to_euler(euler_to_matrix(angles)))
    np.testing.assert_allclose(back.numpy(), euler_to_matrix(angles).numpy(), atol=1e-10)


def test_point_projects_to_first_two_rows() -> None:
    matrix = euler_to_matrix(torch.tensor([[90.0, 0.0, 0.0]], dtype=torch.float64))
    image_xy = project_points(torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64), matrix)
    np.testing.assert_allclose(image_xy.numpy(), [[[0.0, -1.0]]], atol=1e-12)


def test_shift_is_minus_origin() -> None:
    origin = torch.tensor([[3.0, -2.0]])
    assert torch.equal(shift_from_origin(origin), -origin)
