"""Particle transforms on a cropped grid, the same bits from stacks and from a store.

:func:`cropped_transforms` is the one function that turns images into the Fourier-cropped
transforms of the training grid: the batch reader applies it to images read from the
``.mrcs`` stacks, and :func:`write_half_set_store` applies it to fill a particle store
(:mod:`dynamight_core.io.particle_store`). It always runs on the CPU, so a float32 store
gives batches bit-identical to those read from the stacks, on any training device.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from dynamight_core.errors import InputError
from dynamight_core.geometry.fourier import crop_fourier_2d
from dynamight_core.io.particle_store import (
    MANIFEST_FILE,
    ParticleStore,
    StoreLayout,
    open_particle_store,
    write_particle_store,
)
from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import ParticleSet
from dynamight_core.io.store_copy import local_store

logger = logging.getLogger(__name__)


def cropped_transforms(images: np.ndarray, crop_px: int) -> torch.Tensor:
    """Fourier-cropped transforms of images (on the CPU).

    Parameters
    ----------
    images
        `(B, D, D)` float32 images, indexed (y, x).
    crop_px
        Training box d (even, at most D).

    Returns
    -------
    torch.Tensor
        `(B, d, d//2+1)` complex64 ``torch.fft.rfft2`` transforms cropped by
        :func:`~dynamight_core.geometry.fourier.crop_fourier_2d` (not rescaled: the
        values are those of the full box's transform), C-contiguous.
    """
    full = torch.fft.rfft2(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
    return crop_fourier_2d(full, crop_px).contiguous()


def transforms_from_store(values: np.ndarray, value_scale: float) -> torch.Tensor:
    """Complex transforms from a store's values (the inverse of the store's encoding).

    Parameters
    ----------
    values
        `(B, d, d//2+1, 2)` float32 or float16 (real, imaginary), times ``value_scale``.
    value_scale
        The store's scale (1 for float32: the values are returned bit for bit).

    Returns
    -------
    torch.Tensor
        `(B, d, d//2+1)` complex64 transforms (CPU).
    """
    real = torch.from_numpy(np.ascontiguousarray(values)).float()
    if value_scale != 1.0:
        real = real / value_scale
    return torch.view_as_complex(real.contiguous())


def store_layout(particle_set: ParticleSet, crop_px: int, precision: str) -> StoreLayout:
    """The layout of a store of ``particle_set`` on a ``crop_px`` training box."""
    return StoreLayout(crop_px, particle_set.box_px, particle_set.pixel_size_a, precision)


def write_half_set_store(
    path: str | Path,
    particle_set: ParticleSet,
    rows: np.ndarray,
    layout: StoreLayout,
    chunk_particles: int = 256,
) -> None:
    """Read the particles ``rows`` from their stacks and write their store at ``path``.

    Parameters
    ----------
    path
        The store folder (written atomically).
    particle_set
        Validated particles (stacks checked).
    rows
        `(P,)` STAR rows of the half set.
    layout
        Training box, the particles' box and pixel size, precision.
    chunk_particles
        Particles read and transformed at a time (memory: a few chunks of full images).
    """
    source = ImageSource(particle_set)

    def transform(chunk: np.ndarray) -> np.ndarray:
        ft = cropped_transforms(source.read(chunk), layout.box_px)
        return torch.view_as_real(ft).numpy()

    try:
        write_particle_store(path, particle_set, rows, layout, transform, chunk_particles)
    finally:
        source.close()


def read_store_transforms(store: ParticleStore, indices: np.ndarray) -> torch.Tensor:
    """`(B, d, d//2+1)` complex64 transforms of the particles ``indices`` (CPU)."""
    return transforms_from_store(store.read(indices), store.layout.value_scale)


@contextlib.contextmanager
def training_images(
    particle_set: ParticleSet,
    rows: np.ndarray,
    crop_px: int,
    store: str | Path | None,
    local_copy: str | None,
) -> Iterator[ImageSource | ParticleStore]:
    """The images a training reads: the stacks, or the checked store (maybe copied).

    Parameters
    ----------
    particle_set
        The particles (stacks checked).
    rows
        `(P,)` STAR rows the store must hold: the half set's.
    crop_px
        The training grid's box d; the store's must be the same.
    store
        A particle store folder, or ``None`` to read the stacks.
    local_copy
        Scratch folder for a copy of the store during the job (``None``: read in place).

    Raises
    ------
    InputError
        Before any compute, when the store does not hold these particles as the STAR file
        gives them, or holds another training grid.
    """
    if store is None:
        stacks = ImageSource(particle_set)
        try:
            yield stacks
        finally:
            stacks.close()
        return
    checked = open_particle_store(store, particle_set, rows)
    if checked.box_px != crop_px:
        raise InputError(
            Path(store) / MANIFEST_FILE,
            "box_px",
            f"{crop_px} px, the training grid of vae.max_resolution_a and vae.encoder_px",
            f"{checked.box_px} px (a store made with other vae settings)",
            "Run store-particles again with the training's vae settings.",
        )
    with local_store(store, local_copy) as folder:
        opened = ParticleStore(folder, checked.manifest, checked.rows)
        try:
            yield opened
        finally:
            opened.close()
