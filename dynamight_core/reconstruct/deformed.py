"""Deformed reconstruction of one half set: geometry and backprojection sums.

A half map ``f`` (consensus frame, voxels of a sphere) should explain every particle ``i``
of its half through the deformed projector ``A_i`` (:mod:`.deformed_projector`):

    minimise  J(f) = sum_i ||A_i f - y_i||^2 + f^T Lambda f,

with ``Lambda`` a Wiener term per Fourier shell (``1/tau^2``). Its normal equations are
``(N + Lambda) f = b`` with ``N = sum_i A_i^T A_i`` and ``b = sum_i A_i^T y_i``, the deformed
backprojection. This module computes ``b`` (:func:`backproject`) for a set of particles, in
two quarters (alternate particles of the half) so that the half's own FSC gives its
``tau^2``, with the same quarters' undeformed kernel and backprojection on the padded box
(:mod:`.rigid_kernel`). Sums of disjoint particle sets add (:meth:`DeformedSums.merged`):
a half can be split into shards, each its own job. :mod:`.deformed_filter` turns the sums
into the filtered backprojection, :mod:`.deformed_solve` refines it iteratively.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from dynamight_core.data.batches import BatchReader
from dynamight_core.geometry.fourier import hermitian_weights_2d
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.models.decoders import Decoder
from dynamight_core.models.deformation import DeformationModel, particle_radius_a
from dynamight_core.progress import track
from dynamight_core.reconstruct.deformed_projector import (
    ControlGrid,
    DeformedProjector,
    DisplacementField,
    SupportGrid,
)
from dynamight_core.reconstruct.homogeneous import MASK_EDGE_PX, MASK_MARGIN_PX
from dynamight_core.reconstruct.insertion import centred_transform
from dynamight_core.reconstruct.reference_state import ReferenceState
from dynamight_core.reconstruct.rigid_kernel import PAD, RigidAccumulator

logger = logging.getLogger(__name__)


def support_radius_px(particle_radius_a: float, pixel_size_a: float, box_px: int) -> float:
    """Radius (px) of the reconstructed sphere: the particle, a margin and the mask's soft edge."""
    radius = particle_radius_a / pixel_size_a + MASK_MARGIN_PX + MASK_EDGE_PX  # as the map's mask
    return float(min(radius, box_px / 2 - 1))


# ---------------------------------------------------------------------------------------------
# Per-particle geometry
# ---------------------------------------------------------------------------------------------


@dataclass
class DeformedGeometry:
    """What the projector needs for particles of one half: poses, CTFs, latents, field.

    Attributes
    ----------
    reader
        Reads images, CTFs and rotations.
    latents
        `(N, L)` latent point of every STAR row of the half (rows of other halves unused).
    field
        The deformation (latent, consensus position) -> displacement, box units.
    control
        Control grid the field is evaluated on.
    projector
        The deformed projector of the support.
    reference
        The state the map is reconstructed in (None: the trained consensus).
    """

    reader: BatchReader
    latents: torch.Tensor
    field: DisplacementField
    control: ControlGrid
    projector: DeformedProjector
    reference: ReferenceState | None = None

    def __post_init__(self) -> None:
        # the voxels' trilinear weights of the control nodes, the same for every particle
        self.weights = self.control.interpolation(self.projector.support.positions_px)

    def coords(self, rows: np.ndarray, rotations: torch.Tensor) -> torch.Tensor:
        """`(B, V, 2)` image coordinates of the deformed support voxels of particles ``rows``."""
        latents = self.latents[torch.as_tensor(rows, device=self.latents.device)]
        with torch.no_grad():
            moved = self.control.displacements_px(self.field, latents, self.weights)
        return self.projector.image_coords(rotations, moved)


def deformation_field(model: DeformationModel, inverse: Decoder | None) -> DisplacementField:
    """The field that brings images back: the forward decoder, or minus the inverse's residual.

    With the inverse network (the paper's way), a voxel ``x`` is sampled at ``x - r(z, x)``:
    the first-order forward position, ``2x - c(x)`` in the paper's words.
    """
    if inverse is None:
        return model.decoder

    def first_order(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return -inverse(latents, points)

    return first_order


def half_set_geometry(
    reader: BatchReader,
    model: DeformationModel,
    latents_by_row: torch.Tensor,
    inverse: Decoder | None,
    control_grid: int,
    reference: ReferenceState | None = None,
) -> DeformedGeometry:
    """Geometry of a half set's deformed reconstruction.

    Parameters
    ----------
    reader
        Reads the particles.
    model
        The half set's trained deformation model (its consensus sets the support).
    latents_by_row
        `(N, L)` latent of every STAR row (the half's rows are used).
    inverse
        The half set's inverse network for ``method: inverse``, else None (the exact adjoint).
    control_grid
        Nodes per axis of the control grid.
    reference
        The state the map is reconstructed in (None: the trained consensus).
    """
    particles = reader.particle_set
    device = reader.device
    box = particles.box_px
    radius = support_radius_px(particle_radius_a(model.consensus), particles.pixel_size_a, box)
    support = SupportGrid.sphere(box, radius, device)
    field = deformation_field(model, inverse)
    return DeformedGeometry(
        reader,
        latents_by_row.to(device),
        reference.field(field) if reference is not None else field,
        ControlGrid(box, control_grid, device),
        DeformedProjector(support),
        reference,
    )


def batch_rows(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``rows`` in consecutive chunks of ``batch_size``."""
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]


# ---------------------------------------------------------------------------------------------
# Backprojection sums
# ---------------------------------------------------------------------------------------------


@dataclass
class DeformedSums:
    """Sums over a set of particles of one half, per quarter.

    Attributes
    ----------
    box_px, radius_px
        The support (sphere of ``radius_px`` in a box of ``box_px``).
    numerators
        `(2, V)` deformed backprojection ``sum A_i^T y_i`` of each quarter.
    transfers
        `(2, G, G, G//2+1)` transfer ``H`` of each quarter's undeformed normal operator on
        the padded grid (``G = 2 D``, :class:`~.rigid_kernel.RigidAccumulator`).
    rigid
        `(2, G, G, G)` each quarter's undeformed backprojection on the padded box.
    data_norm
        Sum of ``||y_i||^2`` (Hermitian sum over the kept frequencies).
    rows
        STAR rows included, sorted.
    """

    box_px: int
    radius_px: float
    numerators: torch.Tensor
    transfers: torch.Tensor
    rigid: torch.Tensor
    data_norm: float
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def empty(cls, support: SupportGrid) -> DeformedSums:
        """Zero sums on ``support``."""
        box = support.box_px
        size = PAD * box
        device = support.positions_px.device
        return cls(
            box,
            support.radius_px,
            torch.zeros(2, support.n_voxels, device=device),
            torch.zeros(2, size, size, size // 2 + 1, device=device),
            torch.zeros(2, size, size, size, device=device),
            0.0,
        )

    def merged(self, other: DeformedSums) -> DeformedSums:
        """Sums over both particle sets (which must be disjoint, on the same support)."""
        if (self.box_px, self.radius_px) != (other.box_px, other.radius_px):
            raise ValueError(
                f"cannot add sums on different supports: box {self.box_px} radius "
                f"{self.radius_px} px and box {other.box_px} radius {other.radius_px} px"
            )
        overlap = np.intersect1d(self.rows, other.rows)
        if len(overlap):
            raise ValueError(f"{len(overlap)} particles are in both sums (e.g. row {overlap[0]})")
        return DeformedSums(
            self.box_px,
            self.radius_px,
            self.numerators + other.numerators.to(self.numerators),
            self.transfers + other.transfers.to(self.transfers),
            self.rigid + other.rigid.to(self.rigid),
            self.data_norm + other.data_norm,
            np.sort(np.concatenate([self.rows, other.rows])),
        )

    def state(self) -> dict[str, object]:
        """Tensors and numbers for a weights-only torch file."""
        return {
            "box_px": self.box_px,
            "radius_px": self.radius_px,
            "numerators": self.numerators.cpu(),
            "transfers": self.transfers.cpu(),
            "rigid": self.rigid.cpu(),
            "data_norm": self.data_norm,
            "rows": torch.from_numpy(self.rows.astype(np.int64)),
        }

    @classmethod
    def from_state(cls, state: dict[str, object], device: torch.device) -> DeformedSums:
        """Sums saved by :meth:`state`."""
        tensors = [state[key] for key in ("numerators", "transfers", "rigid", "rows")]
        numerators, transfers, rigid, rows = (
            tensor for tensor in tensors if isinstance(tensor, torch.Tensor)
        )
        return cls(
            int(state["box_px"]),  # type: ignore[call-overload]
            float(state["radius_px"]),  # type: ignore[arg-type]
            numerators.to(device),
            transfers.to(device),
            rigid.to(device),
            float(state["data_norm"]),  # type: ignore[arg-type]
            rows.numpy(),
        )


def quarter_of(half_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Quarter (0 or 1) of ``rows``: the parity of their place among the half's sorted rows.

    It depends only on the half, not on how its particles are sharded.
    """
    place = np.searchsorted(np.sort(half_rows), rows)
    return place % 2


def backproject(
    geometry: DeformedGeometry,
    half_rows: np.ndarray,
    rows: np.ndarray,
    batch_size: int,
    checkpointer: Checkpointer | None = None,
    flush_every: int = 16,
) -> DeformedSums:
    """Deformed backprojection and CTF² sums of particles ``rows`` (a subset of the half).

    Parameters
    ----------
    geometry
        Poses, latents and the deformation of the half.
    half_rows
        Every STAR row of the half (sets the quarters).
    rows
        The rows to backproject (all of ``half_rows``, or one shard of them).
    batch_size
        Particles per batch.
    checkpointer
        Saves the running sums every ``flush_every`` batches; a restart continues from the
        last save with the same result.
    flush_every
        Batches between two folds of the undeformed sums (:meth:`RigidAccumulator.flush`)
        and two checkpoints.
    """
    projector = geometry.projector
    support = projector.support
    sums = DeformedSums.empty(support)
    device = sums.transfers.device
    order = np.sort(rows)
    quarters = quarter_of(half_rows, order)
    # one quarter after the other: one accumulator grid at a time
    batches = [
        (quarter, chunk)
        for quarter in (0, 1)
        for chunk in batch_rows(order[quarters == quarter], batch_size)
    ]
    accumulator = RigidAccumulator(support.box_px, device)
    first = 0
    saved = checkpointer.load("running") if checkpointer else None
    if saved is not None:
        first = int(saved["batch"])
        sums = DeformedSums.from_state(saved["sums"], device)
        logger.info("resuming from checkpoint at batch %d of %d", first, len(batches))
    steps = range(first, len(batches))
    particles = sum(len(batches[step][1]) for step in steps)
    for step in track(
        steps,
        particles,
        "deformed backprojection",
        size=lambda step: len(batches[step][1]),
        logger=logger,
    ):
        quarter, chunk = batches[step]
        _backproject_batch(geometry, quarter, chunk, sums, accumulator)
        last_of_quarter = step + 1 == len(batches) or batches[step + 1][0] != quarter
        # the same flushes with or without a checkpointer: the sums are bit-identical
        due = (step + 1) % flush_every == 0
        if last_of_quarter or due:
            _flush(accumulator, quarter, sums)
        if checkpointer and due and step + 1 < len(batches):
            checkpointer.save("running", {"batch": step + 1, "sums": sums.state()})
    sums.rows = np.sort(sums.rows)
    return sums


def _flush(accumulator: RigidAccumulator, quarter: int, sums: DeformedSums) -> None:
    """Move the accumulator's sums into ``sums``' ``quarter``."""
    accumulator.flush()
    sums.transfers[quarter] += accumulator.transfer
    sums.rigid[quarter] += accumulator.backprojection
    accumulator.transfer.zero_()
    accumulator.backprojection.zero_()


def _backproject_batch(
    geometry: DeformedGeometry,
    quarter: int,
    rows: np.ndarray,
    sums: DeformedSums,
    accumulator: RigidAccumulator,
) -> None:
    """Add the particles ``rows`` of ``quarter`` to ``sums`` and to the accumulator."""
    reader, projector = geometry.reader, geometry.projector
    batch = reader.read(rows)
    shifts_px = batch.shifts_a / reader.particle_set.pixel_size_a
    spectra = centred_transform(batch.images_ft, shifts_px) * projector.keep
    coords = geometry.coords(rows, batch.rotations)
    sums.numerators[quarter] += projector.adjoint(spectra, coords, batch.ctf)
    accumulator.insert(batch.ctf, batch.rotations, spectra)
    weights = hermitian_weights_2d(projector.box_px, spectra.device)
    sums.data_norm += float((weights * spectra.abs() ** 2).sum())
    sums.rows = np.concatenate([sums.rows, rows])
