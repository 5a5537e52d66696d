"""Consensus (homogeneous) reconstruction of two independent half maps and the full map.

Each half map is a Wiener-filtered Fourier reconstruction whose regularisation comes from
that half only: the half is split into two quarters, the FSC between the quarter maps
gives the half's spectral SNR (``2 FSC / (1 - FSC)``), and ``1/tau^2`` follows as in RELION.
No statistic of one half touches the other half's map. The full map uses all particles
and the mean of the two halves' regularisers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import ParticleSet
from dynamight_core.logs import progress
from dynamight_core.metrics.fsc import FscCurve, fsc
from dynamight_core.physics.ctf import compute_ctf
from dynamight_core.reconstruct.insertion import FourierAccumulator, padded_centred_transform

logger = logging.getLogger(__name__)

PRELIMINARY_REGULARISER = 1e-4
FSC_CLIP = (1e-3, 0.9999)


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


def accumulate(
    particle_set: ParticleSet,
    source: ImageSource,
    indices: np.ndarray,
    pad: int,
    batch_size: int,
    device: torch.device,
    label: str,
) -> FourierAccumulator:
    """Insert the particles ``indices`` into a new :class:`FourierAccumulator`."""
    accumulator = FourierAccumulator(particle_set.box_px, pad, device)
    size = accumulator.size
    pixel = particle_set.pixel_size_a
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    for batch in progress(batches, len(batches), f"backprojecting {label}", logger):
        images = torch.from_numpy(source.read(batch)).to(device)
        shifts_px = particle_set.shifts_a(batch, device) / pixel
        slices = padded_centred_transform(images, shifts_px, pad)
        ctf = compute_ctf(particle_set.ctf_parameters(batch, device), size, pixel)
        accumulator.insert(slices, ctf, particle_set.rotations(batch, device))
    return accumulator


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


def reconstruct_half(
    particle_set: ParticleSet,
    source: ImageSource,
    indices: np.ndarray,
    pad: int,
    batch_size: int,
    device: torch.device,
    tau2_fudge: float,
    label: str,
) -> tuple[np.ndarray, torch.Tensor, FourierAccumulator]:
    """One half map from its own particles only; returns (map, regulariser, sums)."""
    quarters = [
        accumulate(
            particle_set,
            source,
            indices[offset::2],
            pad,
            batch_size,
            device,
            f"{label} quarter {offset + 1}",
        )
        for offset in (0, 1)
    ]
    regulariser = regulariser_from_quarters(*quarters, particle_set.pixel_size_a, tau2_fudge)
    total = quarters[0].merged(quarters[1])
    volume = total.reconstruct(regulariser.to(device)).cpu().numpy()
    return volume, regulariser, total


def reconstruct_half_maps(
    particle_set: ParticleSet,
    source: ImageSource,
    halves: np.ndarray,
    pad: int = 2,
    batch_size: int = 64,
    device: torch.device | None = None,
    tau2_fudge: float = 1.0,
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
    """
    device = device or torch.device("cpu")
    maps, regularisers, sums = [], [], []
    for half in (1, 2):
        indices = np.flatnonzero(halves == half)
        volume, regulariser, total = reconstruct_half(
            particle_set, source, indices, pad, batch_size, device, tau2_fudge, f"half {half}"
        )
        maps.append(volume)
        regularisers.append(regulariser)
        sums.append(total)
    full_regulariser = 0.5 * (regularisers[0] + regularisers[1])
    full = sums[0].merged(sums[1]).reconstruct(full_regulariser.to(device)).cpu().numpy()
    curve = fsc(maps[0], maps[1], particle_set.pixel_size_a)
    logger.info(
        "half-map FSC: %.2f Å at 0.143, %.2f Å at 0.5",
        curve.resolution_at(0.143),
        curve.resolution_at(0.5),
    )
    return HalfMapResult(
        maps[0], maps[1], full, curve, regularisers[0].numpy(), regularisers[1].numpy()
    )
