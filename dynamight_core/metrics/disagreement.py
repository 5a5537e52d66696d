"""How much two half sets' estimates of the same particles' motions disagree."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Disagreement:
    """Per-particle disagreement of two displacement estimates (Å).

    Attributes
    ----------
    error_a
        `(P,)` RMS over points of the difference, after removing each point's mean
        difference over the particles (the two consensus references need not be the
        same state).
    error_with_offset_a
        `(P,)` the same without removing the offset.
    motion_a
        `(P,)` RMS over points of the first estimate's displacement from its mean.
    """

    error_a: np.ndarray
    error_with_offset_a: np.ndarray
    motion_a: np.ndarray


def disagreement(first_a: np.ndarray, second_a: np.ndarray) -> Disagreement:
    """Compare `(P, M, 3)` displacements (Å) of the same P particles at the same M points."""
    difference = first_a - second_a
    raw = np.sqrt((difference**2).sum(-1).mean(1))
    centred = difference - difference.mean(axis=0, keepdims=True)
    per_particle = np.sqrt((centred**2).sum(-1).mean(1))
    amplitude = np.sqrt(((first_a - first_a.mean(0)) ** 2).sum(-1).mean(1))
    return Disagreement(per_particle, raw, amplitude)


@dataclass(frozen=True)
class PointReliability:
    """Per-point motion and its error over the same P particles (Å).

    Attributes
    ----------
    motion_a
        `(M,)` RMS over particles of the first estimate's displacement about its mean.
    error_a
        `(M,)` RMS over particles of the two estimates' difference about its mean.
    """

    motion_a: np.ndarray
    error_a: np.ndarray


def point_reliability(first_a: np.ndarray, second_a: np.ndarray) -> PointReliability:
    """Per point of `(P, M, 3)` displacements (Å): how far it moves and how well we know it."""
    difference = first_a - second_a
    centred = difference - difference.mean(axis=0, keepdims=True)
    moving = first_a - first_a.mean(axis=0, keepdims=True)
    return PointReliability(
        np.sqrt((moving**2).sum(-1).mean(0)), np.sqrt((centred**2).sum(-1).mean(0))
    )
