"""Batches of particles for training, read from memory-mapped stacks.

A batch holds the images' Fourier transforms (``torch.fft.rfft2`` layout, box centre at
index ``D//2``, the layout the renderer produces), the CTFs, the rotation matrices and the
particle shifts. Reading runs one batch ahead in a background thread so the disk and the
compute overlap; memory stays at a few batches whatever the number of particles.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.data.particles import (
    particle_ctf_parameters,
    particle_rotations,
    particle_shifts_a,
)
from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import ParticleSet
from dynamight_core.physics.ctf import compute_ctf


@dataclass
class ParticleBatch:
    """One batch of B particles.

    Attributes
    ----------
    indices
        `(B,)` rows of the STAR file.
    images_ft
        `(B, D, D//2+1)` complex transforms of the images.
    ctf
        `(B, D, D//2+1)` CTFs.
    rotations
        `(B, 3, 3)` RELION matrices ``A``.
    shifts_a
        `(B, 2)` particle-centre positions relative to the box centre (Å).
    """

    indices: np.ndarray
    images_ft: torch.Tensor
    ctf: torch.Tensor
    rotations: torch.Tensor
    shifts_a: torch.Tensor


class BatchReader:
    """Turns particle indices into :class:`ParticleBatch` objects on a device."""

    def __init__(
        self, particle_set: ParticleSet, source: ImageSource, device: torch.device
    ) -> None:
        self.particle_set = particle_set
        self.source = source
        self.device = device

    def read(self, indices: np.ndarray) -> ParticleBatch:
        """Load and prepare the particles ``indices``."""
        particles = self.particle_set
        images = torch.from_numpy(self.source.read(indices)).to(self.device)
        ctf, rotations = self.geometry(indices)
        return ParticleBatch(
            indices,
            torch.fft.rfft2(images),
            ctf,
            rotations,
            particle_shifts_a(particles, indices, self.device),
        )

    def geometry(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, D, D//2+1)` CTFs and `(B, 3, 3)` rotations of particles ``indices``, no images."""
        particles = self.particle_set
        ctf = compute_ctf(
            particle_ctf_parameters(particles, indices, self.device),
            particles.box_px,
            particles.pixel_size_a,
        )
        return ctf, particle_rotations(particles, indices, self.device)

    def batches(
        self, indices: np.ndarray, batch_size: int, shuffle_seed: int | None = None
    ) -> Iterator[ParticleBatch]:
        """Batches over ``indices`` (shuffled with ``shuffle_seed``), read one ahead."""
        order = np.array(indices)
        if shuffle_seed is not None:
            np.random.default_rng(shuffle_seed).shuffle(order)
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        ahead: queue.Queue[ParticleBatch | BaseException | None] = queue.Queue(maxsize=2)

        def produce() -> None:
            try:
                for chunk in chunks:
                    ahead.put(self.read(chunk))
            except BaseException as error:  # handed to the consumer, re-raised there
                ahead.put(error)
                return
            ahead.put(None)

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        while (item := ahead.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
        worker.join()
