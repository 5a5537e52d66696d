"""Batches of particles for training, read from memory-mapped stacks.

A batch holds the images' Fourier transforms (``torch.fft.rfft2`` layout, box centre at
index ``D//2``, the layout the renderer produces), the CTFs, the rotation matrices and the
particle shifts. Reading runs one batch ahead in a background thread so the disk and the
compute overlap; memory stays at a few batches whatever the number of particles.

With ``crop_px`` a reader makes batches on a Fourier-cropped grid (the VAE's training grid,
`(d, d//2+1)` transforms and CTFs), from the stacks or from a particle store
(:mod:`dynamight_core.io.particle_store`): a float32 store gives bit-identical batches.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.data.particles import (
    particle_ctf_parameters,
    particle_rotations,
    particle_shifts_a,
)
from dynamight_core.data.store_images import cropped_transforms, read_store_transforms
from dynamight_core.io.particle_store import ParticleStore
from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import ParticleSet
from dynamight_core.physics.ctf import compute_ctf
from dynamight_core.progress import track

logger = logging.getLogger(__name__)


@dataclass
class ParticleBatch:
    """One batch of B particles.

    Attributes
    ----------
    indices
        `(B,)` rows of the STAR file.
    images_ft
        `(B, D, D//2+1)` complex transforms of the images; `(B, d, d//2+1)` on a reader's
        cropped grid (``crop_px=d``).
    ctf
        `(B, D, D//2+1)` CTFs; `(B, d, d//2+1)` on a cropped grid.
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
    """Turns particle indices into :class:`ParticleBatch` objects on a device.

    Parameters
    ----------
    particle_set
        The particles' metadata.
    source
        Where the images come from: the stacks (:class:`ImageSource`) or a particle store
        (:class:`ParticleStore`, which needs ``crop_px`` equal to its box).
    device
        Where batches are made.
    crop_px
        Training box d: batches hold the `(d, d//2+1)` Fourier crop of the transforms and
        the CTF on that grid (pixel ``pixel_size_a * D / d``). ``None``: the full box D.
    """

    def __init__(
        self,
        particle_set: ParticleSet,
        source: ImageSource | ParticleStore,
        device: torch.device,
        crop_px: int | None = None,
    ) -> None:
        if isinstance(source, ParticleStore) and crop_px != source.box_px:
            raise ValueError(
                f"the particle store {source.path} holds {source.box_px} px transforms, "
                f"not crop_px={crop_px}"
            )
        self.particle_set = particle_set
        self.source = source
        self.device = device
        self.crop_px = crop_px

    @property
    def box_px(self) -> int:
        """Box of the batches' grid: ``crop_px``, or the particles' box."""
        return self.particle_set.box_px if self.crop_px is None else self.crop_px

    @property
    def pixel_size_a(self) -> float:
        """Pixel size of the batches' grid in Å (that of ``TrainingGrid.choose``)."""
        particles = self.particle_set
        if self.crop_px is None or self.crop_px == particles.box_px:
            return particles.pixel_size_a
        return particles.pixel_size_a * particles.box_px / self.crop_px

    def read(self, indices: np.ndarray) -> ParticleBatch:
        """Load and prepare the particles ``indices``."""
        ctf, rotations = self.geometry(indices)
        return ParticleBatch(
            indices,
            self.transforms(indices),
            ctf,
            rotations,
            particle_shifts_a(self.particle_set, indices, self.device),
        )

    def transforms(self, indices: np.ndarray) -> torch.Tensor:
        """`(B, D, D//2+1)` (or `(B, d, d//2+1)` cropped) image transforms on the device."""
        if isinstance(self.source, ParticleStore):
            return read_store_transforms(self.source, indices).to(self.device)
        images = self.source.read(indices)
        if self.crop_px is None:
            return torch.fft.rfft2(torch.from_numpy(images).to(self.device))
        return cropped_transforms(images, self.crop_px).to(self.device)

    def geometry(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """CTFs `(B, D, D//2+1)` (or cropped) and `(B, 3, 3)` rotations of ``indices``."""
        particles = self.particle_set
        ctf = compute_ctf(
            particle_ctf_parameters(particles, indices, self.device),
            self.box_px,
            self.pixel_size_a,
        )
        return ctf, particle_rotations(particles, indices, self.device)

    def tracked(
        self,
        indices: np.ndarray,
        batch_size: int,
        what: str,
        shuffle_seed: int | None = None,
    ) -> Generator[ParticleBatch, None, None]:
        """:meth:`batches`, reporting progress as ``what`` (``dynamight_core.progress``).

        Closing this iterator (e.g. ``contextlib.closing`` around an epoch) closes the
        batches' prefetcher at once, not when the garbage collector gets to it.
        """
        batches = self.batches(indices, batch_size, shuffle_seed)
        try:
            yield from track(
                batches,
                len(indices),
                what,
                size=lambda batch: len(batch.indices),
                logger=logger,
            )
        finally:
            batches.close()

    def batches(
        self, indices: np.ndarray, batch_size: int, shuffle_seed: int | None = None
    ) -> Generator[ParticleBatch, None, None]:
        """Batches over ``indices`` (shuffled with ``shuffle_seed``), read one ahead.

        However the loop over them ends (done, an exception, an early stop, the generator
        closed), its :class:`Prefetcher` is stopped, joined and emptied.
        """
        order = np.array(indices)
        if shuffle_seed is not None:
            np.random.default_rng(shuffle_seed).shuffle(order)
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        prefetcher = Prefetcher(self.read, chunks)
        try:
            yield from prefetcher
        finally:
            prefetcher.close()


PREFETCH_THREAD_NAME = "dynamight-prefetch"
PREFETCH_POLL_S = 0.05


class Prefetcher:
    """Reads batches ahead in a background thread, so the disk and the compute overlap.

    At most ``depth`` batches wait in :attr:`queue` (plus the one being read). Iterating
    yields them in order and re-raises a reading error; :meth:`close` stops the thread,
    joins it and drops every batch it still holds, so that nothing (a thread blocked on a
    full queue, batches on the device) outlives the loop that used it.

    Parameters
    ----------
    read
        Makes the batch of one chunk of STAR rows.
    chunks
        The rows of each batch, in order.
    depth
        Batches read ahead.
    """

    def __init__(
        self,
        read: Callable[[np.ndarray], ParticleBatch],
        chunks: list[np.ndarray],
        depth: int = 2,
    ) -> None:
        self.chunks = chunks
        self.queue: queue.Queue[ParticleBatch | BaseException | None] = queue.Queue(depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._produce, args=(read, chunks), name=PREFETCH_THREAD_NAME, daemon=True
        )
        self.thread.start()

    def _put(self, item: ParticleBatch | BaseException | None) -> bool:
        """Queue ``item``, waiting for room; ``False`` (dropped) once stopped."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=PREFETCH_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(
        self, read: Callable[[np.ndarray], ParticleBatch], chunks: list[np.ndarray]
    ) -> None:
        try:
            for chunk in chunks:
                if self.stop.is_set() or not self._put(read(chunk)):
                    return
        except BaseException as error:  # handed to the consumer, re-raised there
            self._put(error)
            return
        self._put(None)

    def __iter__(self) -> Iterator[ParticleBatch]:
        while (item := self.queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _drain(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                return

    def close(self) -> None:
        """Stop reading, wait for the thread (at most one read) and drop what it queued."""
        self.stop.set()
        self._drain()
        self.thread.join()
        self._drain()
