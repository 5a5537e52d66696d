"""Memory of the deformed backprojection (:func:`.deformed.backproject`), from the shapes.

Two parts matter, and both grow with the box D:

* fixed, whatever the batch: the undeformed accumulator's spread grid `(2, 4D, 4D, 4D)`
  (:class:`.rigid_kernel.RigidAccumulator`, ``OVERSAMPLING x PAD = 4``), its folded sums and
  the running sums of both quarters on the `(2D)^3` box, and, while the accumulator is
  folded (:meth:`~.rigid_kernel.RigidAccumulator.flush`), the transform of one `(4D)^3`
  grid with its re-indexed copies: about ``1,200 D^3`` bytes in all, 20 GB at D = 256 and
  75 GB at D = 400;
* per particle: the displacements, positions and image coordinates of every support voxel
  (`(B, V, 3)` and `(B, V, 2)` float32, V up to about ``D^3 / 2``), about ``32 V`` bytes
  per particle, 0.27 GB per particle at D = 256 -- and the 4x oversampled images.

The two never coincide (the fold runs between batches), so the peak is the fixed part
plus the larger of the fold and a batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dynamight_core.memory import ByteBreakdown, choose_batch_size, device_memory_bytes
from dynamight_core.reconstruct.rigid_kernel import OVERSAMPLING, PAD

FLOAT_BYTES = 4
COMPLEX_BYTES = 8
INDEX_BYTES = 8  # int64
PROJECTOR_OVERSAMPLING = 4  # DeformedProjector's default fine image grid


@dataclass(frozen=True)
class BackprojectionMemory(ByteBreakdown):
    """Estimated peak bytes of the deformed backprojection, by part (all in bytes).

    Attributes
    ----------
    sums_bytes
        Running sums of both quarters (numerators, transfers, undeformed backprojections).
    accumulator_bytes
        The accumulator's spread grid and its folded transfer and backprojection.
    support_bytes
        Support voxels, their positions and the control grid's interpolation weights.
    transient_bytes
        The larger of the fold's transforms and one batch's tensors.
    """

    sums_bytes: float
    accumulator_bytes: float
    support_bytes: float
    transient_bytes: float


def support_voxels(box_px: int, radius_px: float | None = None) -> int:
    """Voxels V of the support sphere (``radius_px`` default: the largest, ``D/2 - 1``)."""
    radius = box_px / 2 - 1 if radius_px is None else radius_px
    return math.ceil(4.0 / 3.0 * math.pi * radius**3)


def fold_transient_bytes(box_px: int) -> float:
    """Transforms alive while the accumulator is folded.

    The rfft of one `(L, L, L)` grid (L = 4 D), its copy re-indexed along the first axis
    `(2D, L, L/2+1)` and along the second `(2D, 2D, L/2+1)` (complex), and the other
    channel's result `(2D)^3` complex, already computed.
    """
    fine = OVERSAMPLING * PAD * box_px
    size = PAD * box_px
    spectrum = fine * fine * (fine // 2 + 1)
    first = size * fine * (fine // 2 + 1)
    second = size * size * (fine // 2 + 1)
    return float((spectrum + first + second + size**3) * COMPLEX_BYTES)


def batch_transient_bytes(batch: int, box_px: int, n_voxels: int) -> float:
    """One batch's tensors: voxel displacements and coordinates, images, spectra.

    Per particle: `(V, 3)` displacements, their sum with the positions `(V, 3)` and the
    coordinates `(V, 2)` (float32); the image and its CTF as read and centred, and the
    `(4D, 4D)` oversampled image with its padded transform.
    """
    voxels = n_voxels * (3 + 3 + 2) * FLOAT_BYTES
    half_plane = box_px * (box_px // 2 + 1)
    images = half_plane * (2 * COMPLEX_BYTES + FLOAT_BYTES)
    fine = PROJECTOR_OVERSAMPLING * box_px
    oversampled = fine * (fine // 2 + 1) * COMPLEX_BYTES + 2 * fine * fine * FLOAT_BYTES
    return float(batch * (voxels + images + oversampled))


def estimate_deformed_backprojection_bytes(
    batch: int, box_px: int, radius_px: float | None = None, control_grid: int = 16
) -> BackprojectionMemory:
    """Peak bytes of :func:`.deformed.backproject` at a batch size.

    Parameters
    ----------
    batch
        Particles per batch (``deformed.batch_size``).
    box_px
        Box D of the particles and the map.
    radius_px
        Radius of the support sphere in pixels (default: the largest, ``D/2 - 1``).
    control_grid
        Nodes per axis of the control grid (``deformed.control_grid``).
    """
    voxels = support_voxels(box_px, radius_px)
    size = PAD * box_px
    fine = OVERSAMPLING * size
    transfer = size * size * (size // 2 + 1) * FLOAT_BYTES
    rigid = size**3 * FLOAT_BYTES
    sums = 2 * (voxels * FLOAT_BYTES + transfer + rigid)
    accumulator = 2 * fine**3 * FLOAT_BYTES + transfer + rigid
    # index and positions of the voxels, 8 trilinear weights (int64 column, float32 value)
    support = voxels * (INDEX_BYTES + 3 * FLOAT_BYTES + 8 * (INDEX_BYTES + FLOAT_BYTES))
    support += control_grid**3 * 3 * FLOAT_BYTES
    transient = max(fold_transient_bytes(box_px), batch_transient_bytes(batch, box_px, voxels))
    return BackprojectionMemory(float(sums), float(accumulator), float(support), transient)


DEFORMED_SETTINGS = (
    "deformed.batch_size",
    "resources.backproject_deformed.mem_mb",
)


def plan_backprojection_batch(
    requested: int, box_px: int, radius_px: float, control_grid: int, device: torch.device
) -> int:
    """The deformed backprojection's batch: ``requested`` if it fits ``device``, else a half.

    Raises :class:`~dynamight_core.errors.MemoryPlanError` when not even one particle fits
    (the accumulators alone grow as ``D^3``).
    """

    def estimate(batch: int) -> float:
        return estimate_deformed_backprojection_bytes(
            batch, box_px, radius_px, control_grid
        ).total_bytes

    return choose_batch_size(
        requested,
        estimate,
        device_memory_bytes(device),
        step="backproject-deformed",
        batch_key="deformed.batch_size",
        settings=DEFORMED_SETTINGS,
    )
