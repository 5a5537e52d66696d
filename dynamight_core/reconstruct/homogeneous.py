"""Consensus (homogeneous) reconstruction of two independent half maps and the full map.

Each half map is a Wiener-filtered Fourier reconstruction whose regularisation comes from
that half only: the half is split into two quarters, the FSC between the quarter maps
gives the half's spectral SNR (``2 FSC / (1 - FSC)``), and ``1/tau^2`` follows as in RELION.
No statistic of one half touches the other half's map. The full map uses all particles
and the mean of the two halves' regularisers.

Each output map is then multiplied by a soft spherical solvent mask, as RELION masks with
the particle diameter, so that noise outside the particle does not dominate the map's
high-resolution shells. The diameter comes from the map itself (no setting): the radius
where the map's spherically averaged density, blurred by ``MASK_BLUR_PX``, falls below
``MASK_LEVEL`` of its peak, plus ``MASK_MARGIN_PX``, with a raised-cosine edge of
``MASK_EDGE_PX``. Each half map's mask comes from that half map only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from dynamight_core.config_schema import default_of
from dynamight_core.data.batches import BatchReader
from dynamight_core.geometry.masks import spherical_mask
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import ParticleSet
from dynamight_core.metrics.fsc import FscCurve, fsc
from dynamight_core.progress import track
from dynamight_core.reconstruct.insertion import (
    FourierAccumulator,
    centred_transform,
    scale_shells,
)

logger = logging.getLogger(__name__)

PRELIMINARY_REGULARISER = 1e-4
FSC_CLIP = (1e-3, 0.9999)
MASK_BLUR_PX = 2.0
MASK_LEVEL = 0.02
MASK_MARGIN_PX = 2.0
MASK_EDGE_PX = 5.0  # RELION's default --width_mask_edge


@dataclass(frozen=True)
class HalfMapResult:
    """Half maps, full map and their FSC.

    Attributes
    ----------
    half1, half2, full
        `(D, D, D)` float32 maps.
    fsc
        FSC between the two half maps.
    regulariser1, regulariser2
        `(D//2+1,)` Wiener terms used for each half.
    """

    half1: np.ndarray
    half2: np.ndarray
    full: np.ndarray
    fsc: FscCurve
    regulariser1: np.ndarray
    regulariser2: np.ndarray


def particle_radius_px(volume: np.ndarray) -> float:
    """Radius (px) about the box centre beyond which a map holds only solvent.

    Parameters
    ----------
    volume
        `(D, D, D)` map, box centre at ``D//2``.

    Returns
    -------
    float
        The largest radius whose spherically averaged density, after a Gaussian blur of
        ``MASK_BLUR_PX``, exceeds ``MASK_LEVEL`` times the profile's peak; ``D/2`` when
        the profile never falls that low.
    """
    box = volume.shape[0]
    blurred = ndimage.gaussian_filter(volume.astype(np.float64), MASK_BLUR_PX, mode="wrap")
    axis = np.arange(box) - box // 2
    radius = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    shells = np.round(radius).astype(np.int64).ravel()
    profile = np.bincount(shells, blurred.ravel()) / np.bincount(shells)
    profile = profile[: box // 2 + 1]
    above = np.flatnonzero(profile > MASK_LEVEL * profile.max())
    return float(above.max()) if len(above) else box / 2


def masked_map(
    accumulator: FourierAccumulator, regulariser: torch.Tensor
) -> tuple[np.ndarray, float]:
    """Wiener-filtered map times a soft sphere around the particle (module docstring).

    The mask is applied before the filter's per-shell gain, which it would otherwise
    smear across shells (see :meth:`FourierAccumulator.reconstruct_parts`).

    Returns
    -------
    tuple
        `(D, D, D)` float32 map, and the radius (px) where the mask starts to fall.
    """
    volume, gain = accumulator.reconstruct_parts(regulariser)
    box = accumulator.box_px
    radius_px = particle_radius_px(volume.cpu().numpy())
    radius_px = min(radius_px + MASK_MARGIN_PX, box / 2 - MASK_EDGE_PX)
    mask = torch.from_numpy(spherical_mask(box, radius_px, MASK_EDGE_PX)).to(volume)
    return scale_shells(volume * mask, gain).cpu().numpy(), radius_px


def _batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def _insert_batch(accumulator: FourierAccumulator, reader: BatchReader, rows: np.ndarray) -> None:
    """Read the particles ``rows`` and insert their centred, CTF-weighted slices."""
    batch = reader.read(rows)
    shifts_px = batch.shifts_a / reader.particle_set.pixel_size_a
    slices = centred_transform(batch.images_ft, shifts_px)
    accumulator.insert(slices, batch.ctf, batch.rotations)


def accumulate_tasks(
    particle_set: ParticleSet,
    source: ImageSource,
    tasks: list[np.ndarray],
    pad: int,
    batch_size: int,
    device: torch.device,
    checkpointer: Checkpointer | None = None,
) -> list[FourierAccumulator]:
    """Insert each task's particles into its own accumulator, resumably.

    Finished tasks are saved once (``task_<i>``); the running task is saved every
    ``checkpointer.every`` batches (``running``). On restart, finished tasks are loaded
    and the running one continues from its last saved batch, so the sums are the same
    as those of an uninterrupted run.
    """
    reader = BatchReader(particle_set, source, device)
    accumulators: list[FourierAccumulator] = []
    running = checkpointer.load("running") if checkpointer else None
    for number, indices in enumerate(tasks):
        accumulator = FourierAccumulator(particle_set.box_px, pad, device)
        finished = checkpointer.load(f"task_{number}") if checkpointer else None
        if finished is not None:
            accumulator.load_state(finished)
            accumulators.append(accumulator)
            logger.info("resuming: task %d/%d restored from its checkpoint", number + 1, len(tasks))
            continue
        batches = _batches(indices, batch_size)
        first = 0
        if running is not None and running["task"] == number:
            accumulator.load_state(running)
            first = int(running["batch"])
            logger.info(
                "resuming from checkpoint: task %d/%d at batch %d of %d",
                number + 1,
                len(tasks),
                first,
                len(batches),
            )
        remaining = batches[first:]
        what = f"backprojecting task {number + 1}/{len(tasks)}"
        tracked = track(remaining, sum(map(len, remaining)), what, size=len, logger=logger)
        for step, rows in enumerate(tracked, start=first):
            _insert_batch(accumulator, reader, rows)
            if checkpointer and checkpointer.due(step + 1) and step + 1 < len(batches):
                checkpointer.save(
                    "running", {"task": number, "batch": step + 1, **accumulator.state()}
                )
        if checkpointer:
            checkpointer.save(f"task_{number}", accumulator.state())
        accumulators.append(accumulator)
    return accumulators


def regulariser_from_quarters(
    quarter_a: FourierAccumulator,
    quarter_b: FourierAccumulator,
    pixel_size_a: float,
    tau2_fudge: float,
) -> torch.Tensor:
    """Wiener term ``1/tau^2`` per shell for the half made of two quarters."""
    maps = []
    for quarter in (quarter_a, quarter_b):
        floor = PRELIMINARY_REGULARISER * quarter.mean_weight_per_shell().clamp(min=1e-12)
        maps.append(quarter.reconstruct(floor).cpu().numpy())
    curve = np.clip(fsc(maps[0], maps[1], pixel_size_a).fsc, *FSC_CLIP)
    snr_half = torch.as_tensor(2.0 * curve / (1.0 - curve), dtype=torch.float32)
    mean_weight = (quarter_a.mean_weight_per_shell() + quarter_b.mean_weight_per_shell()).cpu()
    return (mean_weight / (tau2_fudge * snr_half)).clamp(min=1e-12)


def reconstruct_half_maps(
    particle_set: ParticleSet,
    source: ImageSource,
    halves: np.ndarray,
    pad: int = default_of("reconstruct", "pad"),
    batch_size: int = default_of("reconstruct", "batch_size"),
    device: torch.device | None = None,
    tau2_fudge: float = default_of("reconstruct", "tau2_fudge"),
    checkpointer: Checkpointer | None = None,
) -> HalfMapResult:
    """Reconstruct two independent half maps and the full map.

    Parameters
    ----------
    particle_set
        Particle metadata.
    source
        Image reader.
    halves
        `(N,)` half set (1 or 2) of every particle.
    pad
        Fourier padding factor.
    batch_size
        Particles per insertion batch.
    device
        Compute device (CPU if ``None``).
    tau2_fudge
        Multiplies the estimated signal power (``tau^2``), as RELION's ``--tau2_fudge``.
    checkpointer
        Saves progress so that an interrupted run resumes where it stopped.
    """
    device = device or torch.device("cpu")
    tasks = []
    for half in (1, 2):
        indices = np.flatnonzero(halves == half)
        tasks.extend([indices[0::2], indices[1::2]])  # two quarters of each half
    quarters = accumulate_tasks(particle_set, source, tasks, pad, batch_size, device, checkpointer)
    masked, regularisers, sums = [], [], []
    for half in (0, 1):
        quarter_a, quarter_b = quarters[2 * half], quarters[2 * half + 1]
        regulariser = regulariser_from_quarters(
            quarter_a, quarter_b, particle_set.pixel_size_a, tau2_fudge
        )
        total = quarter_a.merged(quarter_b)
        masked.append(masked_map(total, regulariser.to(device)))
        regularisers.append(regulariser)
        sums.append(total)
    full_regulariser = 0.5 * (regularisers[0] + regularisers[1])
    full, radius_full = masked_map(sums[0].merged(sums[1]), full_regulariser.to(device))
    logger.info(
        "solvent masks (radius to the soft edge): half 1 %.1f px, half 2 %.1f px, full %.1f px",
        masked[0][1],
        masked[1][1],
        radius_full,
    )
    maps = [masked[0][0], masked[1][0]]
    curve = fsc(maps[0], maps[1], particle_set.pixel_size_a)
    logger.info(
        "half-map FSC: %.2f Å at 0.143, %.2f Å at 0.5",
        curve.resolution_at(0.143),
        curve.resolution_at(0.5),
    )
    return HalfMapResult(
        maps[0], maps[1], full, curve, regularisers[0].numpy(), regularisers[1].numpy()
    )
