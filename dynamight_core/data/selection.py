"""Regions of a latent space: boolean masks of the particles inside a box, polygon or range.

Used by ``explore select`` to turn a region drawn or typed by the user into a particle
selection. Every predicate returns a `(P,)` boolean mask over the P points given, in
their order. Bounds are inclusive everywhere (a point on a box face, a polygon edge or a
range end is inside); a point with a NaN coordinate is outside every region.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _finite_bounds(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite numbers, got {array.tolist()}")
    return array


def in_box(points: np.ndarray, low: Sequence[float], high: Sequence[float]) -> np.ndarray:
    """Points inside an axis-aligned box on their first K' coordinates, bounds included.

    Parameters
    ----------
    points
        `(P, K)` coordinates (e.g. latent means or PCA scores).
    low, high
        `(K',)` lower and upper bounds of the first K' = ``len(low)`` coordinates,
        1 <= K' <= K; coordinates after the first K' are not constrained.

    Returns
    -------
    np.ndarray
        `(P,)` bool, True where ``low[k] <= points[:, k] <= high[k]`` for every k < K'.

    Raises
    ------
    ValueError
        ``points`` is not 2-D, ``low`` and ``high`` differ in length, are empty, longer
        than K, not finite, or some ``low[k] > high[k]``.
    """
    values = np.asarray(points, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"points must have shape (P, K), got {values.shape}")
    lower, upper = _finite_bounds("low", low), _finite_bounds("high", high)
    if len(lower) != len(upper):
        raise ValueError(f"low has {len(lower)} values but high has {len(upper)}")
    if not 1 <= len(lower) <= values.shape[1]:
        raise ValueError(
            f"the box needs 1 to {values.shape[1]} bounds (one per coordinate), got {len(lower)}"
        )
    if (lower > upper).any():
        raise ValueError(f"low {lower.tolist()} exceeds high {upper.tolist()}")
    head = values[:, : len(lower)]
    return np.asarray(((head >= lower) & (head <= upper)).all(axis=1))


def in_polygon(points: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Points inside a polygon by the even-odd rule, its boundary included.

    A point is inside when a ray from it crosses the polygon's edges an odd number of
    times, so self-intersecting polygons alternate inside and outside. Points on an edge
    or a vertex, to within 1e-9 times the polygon's size (the larger side of its bounding
    box), count as inside: the polygon is closed, like the bounds of :func:`in_box` and
    :func:`in_range`. The polygon is closed automatically (last vertex to first).

    Parameters
    ----------
    points
        `(P, 2)` coordinates.
    vertices
        `(V, 2)` polygon corners in order, V >= 3, finite.

    Returns
    -------
    np.ndarray
        `(P,)` bool, True for points inside or on the boundary.

    Raises
    ------
    ValueError
        Wrong shapes, fewer than 3 vertices, or non-finite vertices.
    """
    values = np.asarray(points, dtype=np.float64)
    corners = np.asarray(vertices, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 2:
        raise ValueError(f"points must have shape (P, 2), got {values.shape}")
    if corners.ndim != 2 or corners.shape[1] != 2 or len(corners) < 3:
        raise ValueError(f"vertices must have shape (V, 2) with V >= 3, got {corners.shape}")
    if not np.isfinite(corners).all():
        raise ValueError("vertices must be finite")
    x, y = values[:, 0], values[:, 1]
    size = float(np.ptp(corners, axis=0).max())
    tolerance = 1e-9 * size if size > 0 else 0.0
    inside = np.zeros(len(values), dtype=bool)
    on_edge = np.zeros(len(values), dtype=bool)
    # one pass per edge, vectorised over the points (V is small, P may be large)
    for (x0, y0), (x1, y1) in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        # crossing number of a ray towards +x: the edge spans the point's y half-open
        # (y0 <= y < y1 or y1 <= y < y0), and the crossing lies right of the point
        spans = (y0 > y) != (y1 > y)
        if spans.any():
            xs = x0 + (y[spans] - y0) * (x1 - x0) / (y1 - y0)
            crossing = np.zeros_like(inside)
            crossing[spans] = x[spans] < xs
            inside ^= crossing
        # distance to the edge segment, for the boundary
        dx, dy = x1 - x0, y1 - y0
        length2 = dx * dx + dy * dy
        t = ((x - x0) * dx + (y - y0) * dy) / length2 if length2 > 0 else np.zeros_like(x)
        t = np.clip(t, 0.0, 1.0)
        distance = np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))
        on_edge |= distance <= tolerance
    return inside | on_edge


def in_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values within ``[low, high]``, both ends included.

    Parameters
    ----------
    values
        `(P,)` numbers (e.g. one latent coordinate or a PCA score).
    low, high
        Finite bounds, ``low <= high``.

    Returns
    -------
    np.ndarray
        `(P,)` bool.

    Raises
    ------
    ValueError
        ``values`` is not 1-D, or the bounds are not finite or ``low > high``.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"values must have shape (P,), got {array.shape}")
    lower, upper = _finite_bounds("range", [low, high])
    if lower > upper:
        raise ValueError(f"low {lower} exceeds high {upper}")
    return np.asarray((array >= lower) & (array <= upper))


def in_labels(labels: np.ndarray, chosen: Sequence[int]) -> np.ndarray:
    """Points whose integer label (e.g. a cluster number) is one of ``chosen``.

    Parameters
    ----------
    labels
        `(P,)` integer labels.
    chosen
        The labels to select (at least one, integers).

    Returns
    -------
    np.ndarray
        `(P,)` bool.

    Raises
    ------
    ValueError
        ``labels`` is not a 1-D integer array, or ``chosen`` is empty or not integers.
    """
    array = np.asarray(labels)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"labels must be a (P,) integer array, got {array.dtype} of shape {array.shape}"
        )
    wanted = np.asarray(chosen)
    if wanted.ndim != 1 or len(wanted) == 0:
        raise ValueError("choose at least one label")
    if not np.issubdtype(wanted.dtype, np.integer):
        raise ValueError(f"chosen labels must be integers, got {list(chosen)}")
    return np.isin(array, wanted)


def parse_vertices(text: str) -> np.ndarray:
    """Polygon vertices from text such as ``"x1,y1;x2,y2;x3,y3"``.

    Vertices are separated by ``;`` and the two coordinates of each by ``,``; spaces
    around numbers are allowed.

    Parameters
    ----------
    text
        At least three ``x,y`` pairs of finite numbers.

    Returns
    -------
    np.ndarray
        `(V, 2)` float64 vertices, V >= 3.

    Raises
    ------
    ValueError
        A vertex is empty, has not exactly two numbers, a number does not parse or is
        not finite, or there are fewer than three vertices.
    """
    example = 'write them as "x1,y1;x2,y2;x3,y3"'
    vertices: list[tuple[float, float]] = []
    for position, piece in enumerate(text.split(";"), start=1):
        parts = piece.split(",")
        if len(parts) != 2 or not all(part.strip() for part in parts):
            raise ValueError(
                f"polygon vertex {position} is {piece.strip()!r}, not two numbers x,y; {example}"
            )
        try:
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(
                f"polygon vertex {position} ({piece.strip()!r}) is not two numbers; {example}"
            ) from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"polygon vertex {position} ({piece.strip()!r}) is not finite")
        vertices.append((x, y))
    if len(vertices) < 3:
        raise ValueError(f"a polygon needs at least 3 vertices, got {len(vertices)}; {example}")
    return np.asarray(vertices, dtype=np.float64)
