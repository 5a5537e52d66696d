"""Latent-space region predicates: box, polygon, range, labels and vertex parsing."""

from __future__ import annotations

import numpy as np
import pytest

from dynamight_core.data.selection import (
    in_box,
    in_labels,
    in_polygon,
    in_range,
    parse_vertices,
)


def _ray_casting_loop(point: tuple[float, float], vertices: np.ndarray) -> bool:
    """Independent reference: even-odd rule by a per-point, per-edge Python loop."""
    px, py = point
    inside = False
    count = len(vertices)
    for i in range(count):
        ax, ay = vertices[i]
        bx, by = vertices[(i + 1) % count]
        if (ay > py) != (by > py):
            cross_x = ax + (py - ay) * (bx - ax) / (by - ay)
            if px < cross_x:
                inside = not inside
    return inside


# ---- in_box -------------------------------------------------------------------------


def test_box_inclusive_bounds_on_first_coordinates() -> None:
    points = np.array(
        [
            [0.0, 0.0, 99.0],  # on the low corner, third coordinate unconstrained
            [1.0, 2.0, -99.0],  # on the high corner
            [0.5, 1.0, 0.0],  # interior
            [1.0000001, 1.0, 0.0],  # just past high in x
            [0.5, -1e-9, 0.0],  # just below low in y
            [np.nan, 1.0, 0.0],  # NaN is outside
        ]
    )
    mask = in_box(points, [0.0, 0.0], [1.0, 2.0])
    assert mask.dtype == np.bool_ and mask.shape == (6,)
    assert mask.tolist() == [True, True, True, False, False, False]


def test_box_one_coordinate_matches_range() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 4))
    np.testing.assert_array_equal(in_box(points, [-0.5], [0.7]), in_range(points[:, 0], -0.5, 0.7))
    expected = (np.abs(points[:, :3]) <= 1.0).all(axis=1)
    np.testing.assert_array_equal(in_box(points, [-1, -1, -1], [1, 1, 1]), expected)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ([0.0, 0.0], [1.0]),  # lengths differ
        ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),  # more bounds than coordinates
        ([], []),  # no bounds
        ([1.0, 0.0], [0.0, 1.0]),  # low > high
        ([np.nan, 0.0], [1.0, 1.0]),  # not finite
    ],
)
def test_box_rejects_bad_bounds(low: list[float], high: list[float]) -> None:
    with pytest.raises(ValueError):
        in_box(np.zeros((3, 2)), low, high)


def test_box_rejects_one_dimensional_points() -> None:
    with pytest.raises(ValueError, match="shape"):
        in_box(np.zeros(3), [0.0], [1.0])


# ---- in_polygon ---------------------------------------------------------------------


def test_polygon_square() -> None:
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    points = np.array(
        [
            [1.0, 1.0],  # centre
            [0.1, 1.9],  # interior near a corner
            [3.0, 1.0],  # right of it
            [-0.1, 1.0],  # left of it
            [1.0, 2.5],  # above
            [1.0, -0.5],  # below
            [1.0, 3.0],  # above, on the line of a vertical edge's extension
        ]
    )
    assert in_polygon(points, square).tolist() == [True, True, False, False, False, False, False]


def test_polygon_boundary_is_inside() -> None:
    square = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    boundary = np.array(
        [[0.0, 1.0], [2.0, 1.0], [1.0, 0.0], [1.0, 2.0], [0.0, 0.0], [2.0, 2.0], [2.0, 0.0]]
    )
    assert in_polygon(boundary, square).all()
    # a slanted edge, where the point is on it only up to rounding
    triangle = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    assert in_polygon(np.array([[1.0 / 3.0, 3.0 - 1.0 / 3.0], [1.5, 1.5]]), triangle).all()
    # just outside the boundary is outside
    outside = np.array([[2.0 + 1e-6, 1.0], [1.0, -1e-6], [1.5 + 1e-6, 1.5 + 1e-6]])
    assert not in_polygon(outside[:2], square).any()
    assert not in_polygon(outside[2:], triangle).any()


def test_polygon_concave_l_shape() -> None:
    # an L: the unit-2 square less its upper-right quarter [1, 2] x [1, 2]
    l_shape = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [1.0, 1.0], [1.0, 2.0], [0.0, 2.0]])
    rng = np.random.default_rng(1)
    points = rng.uniform(-0.5, 2.5, size=(4000, 2))
    x, y = points[:, 0], points[:, 1]
    in_square = (x >= 0) & (x <= 2) & (y >= 0) & (y <= 2)
    in_notch = (x > 1) & (y > 1)
    np.testing.assert_array_equal(in_polygon(points, l_shape), in_square & ~in_notch)
    # the notch's centre is outside, both arms' centres inside
    named = np.array([[1.5, 1.5], [1.5, 0.5], [0.5, 1.5], [0.5, 0.5]])
    assert in_polygon(named, l_shape).tolist() == [False, True, True, True]


def test_polygon_triangle_against_half_planes() -> None:
    triangle = np.array([[0.0, 0.0], [4.0, 0.0], [1.0, 3.0]])
    rng = np.random.default_rng(2)
    points = rng.uniform(-1.0, 5.0, size=(4000, 2))
    x, y = points[:, 0], points[:, 1]
    # inside: above y = 0, left of the line (4, 0)-(1, 3): x + y <= 4, right of (0,0)-(1,3)
    analytic = (y >= 0) & (x + y <= 4) & (3 * x - y >= 0)
    np.testing.assert_array_equal(in_polygon(points, triangle), analytic)
    # the orientation of the vertices does not matter
    np.testing.assert_array_equal(in_polygon(points, triangle[::-1]), analytic)


def test_polygon_random_points_match_reference_loop() -> None:
    rng = np.random.default_rng(3)
    # a star-shaped (concave) 9-gon and a self-intersecting bow-tie
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=9))
    radii = rng.uniform(0.3, 1.0, size=9)
    star = np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])
    bow_tie = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    points = rng.uniform(-1.1, 1.1, size=(1500, 2))
    for polygon in (star, bow_tie):
        expected = np.array([_ray_casting_loop((px, py), polygon) for px, py in points])
        got = in_polygon(points, polygon)
        assert got.shape == (1500,) and got.dtype == np.bool_
        np.testing.assert_array_equal(got, expected)
        assert 0 < expected.sum() < len(points)  # the test sees both answers


def test_polygon_nan_points_are_outside() -> None:
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    points = np.array([[np.nan, 0.5], [0.5, np.nan], [0.5, 0.5]])
    assert in_polygon(points, square).tolist() == [False, False, True]


@pytest.mark.parametrize(
    ("points", "vertices"),
    [
        (np.zeros((3, 2)), np.zeros((2, 2))),  # two vertices
        (np.zeros((3, 3)), np.eye(3)[:, :2]),  # points not 2-D coordinates
        (np.zeros((3, 2)), np.array([[0.0, 0.0], [1.0, np.inf], [0.0, 1.0]])),
    ],
)
def test_polygon_rejects_bad_shapes(points: np.ndarray, vertices: np.ndarray) -> None:
    with pytest.raises(ValueError):
        in_polygon(points, vertices)


# ---- in_range and in_labels ---------------------------------------------------------


def test_range_inclusive() -> None:
    values = np.array([-1.0, 0.0, 0.5, 1.0, 1.0 + 1e-12, np.nan])
    assert in_range(values, 0.0, 1.0).tolist() == [False, True, True, True, False, False]
    assert in_range(values, 0.5, 0.5).tolist() == [False, False, True, False, False, False]


@pytest.mark.parametrize(("low", "high"), [(1.0, 0.0), (np.nan, 1.0), (0.0, np.inf)])
def test_range_rejects_bad_bounds(low: float, high: float) -> None:
    with pytest.raises(ValueError):
        in_range(np.zeros(3), low, high)


def test_labels() -> None:
    labels = np.array([0, 3, 1, 3, 2, 0, 5])
    assert in_labels(labels, [3, 0]).tolist() == [True, True, False, True, False, True, False]
    assert in_labels(labels, [4]).tolist() == [False] * 7
    with pytest.raises(ValueError, match="at least one"):
        in_labels(labels, [])
    with pytest.raises(ValueError, match="integers"):
        in_labels(labels, [1.5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="integer array"):
        in_labels(labels.astype(float), [1])


# ---- parse_vertices -----------------------------------------------------------------


def test_parse_vertices() -> None:
    vertices = parse_vertices("0,0; 2.5, -1 ;1e-3,4")
    assert vertices.shape == (3, 2) and vertices.dtype == np.float64
    np.testing.assert_array_equal(vertices, [[0.0, 0.0], [2.5, -1.0], [0.001, 4.0]])
    # parsed text drives in_polygon
    assert in_polygon(np.array([[0.5, 0.5]]), parse_vertices("0,0;1,0;1,1;0,1")).tolist() == [True]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "vertex 1"),
        ("0,0;1,0", "at least 3"),
        ("0,0;1,0;1", "vertex 3"),
        ("0,0;1,0,2;1,1", "vertex 2"),
        ("0,0;a,0;1,1", "vertex 2"),
        ("0,0;1,0;;1,1", "vertex 3"),
        ("0,0;1,0;1,1;", "vertex 4"),
        ("0,0;1,nan;1,1", "not finite"),
        ("0 0;1 0;1 1", "vertex 1"),
    ],
)
def test_parse_vertices_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_vertices(text)
