"""A half set's particle store: its images' cropped Fourier transforms in one ``.npy`` file.

Reading particles from many ``.mrcs`` stacks means, for every particle of every batch, one
seek into one of many files, the full box read and transformed, and most of the transform
thrown away by the Fourier crop of the training grid. A store is written once per half set
(stage ``store-particles``) and holds only what training uses, contiguous:

``<store>/images.npy``
    `(P, d, d//2+1, 2)` float32 or float16: (real, imaginary) of the ``torch.fft.rfft2``
    transform of each particle's image, Fourier-cropped to the training box d (DC at index
    0, values multiplied by ``value_scale``), one row per particle in STAR-row order.
``<store>/table.npz``
    ``rows`` (`(P,)` int64 STAR rows), ``image_names`` (`(P,)` rlnImageName) and the
    particles' pose and CTF metadata as the STAR file gave them (:data:`METADATA_FIELDS`).
``<store>/store.json``
    The manifest: format, box d, full box D, full pixel size (Å), dtype, value scale,
    particle count, file sizes, a unique ``store_id`` and a fingerprint of every source
    stack the images came from (size, modification time and a hash of sampled blocks).

The store is written in a temporary folder beside its destination, the manifest last, and
the folder is renamed into place: a store without a manifest is partial and is refused.
:func:`open_particle_store` checks a store against the particles it is used with before
any compute (rows, image names, box, pixel size, poses and CTFs), so a store left behind
by an older STAR file is refused, not silently used; so is a store whose source stacks have
changed since (other images behind the same STAR file): their sizes and sampled hashes are
compared, a few reads per stack. Numpy only: the transforms are made
by the caller (``data/store_images.py``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynamight_core.errors import InputError
from dynamight_core.io.stack_fingerprints import check_stacks, stack_fingerprints
from dynamight_core.io.star import ParticleSet

logger = logging.getLogger(__name__)

FORMAT = "dynamight-particle-store/1"
IMAGES_FILE = "images.npy"
TABLE_FILE = "table.npz"
MANIFEST_FILE = "store.json"
PRECISIONS = ("float32", "float16")
# relative tolerance of pixel sizes (STAR text and float32 MRC headers differ in the 7th digit)
PIXEL_SIZE_RTOL = 1e-4
# absolute tolerance of each metadata field, in the field's unit; the store copies the
# STAR's float64 values, so an unchanged STAR file agrees exactly
METADATA_FIELDS: dict[str, float] = {
    "euler_deg": 1e-4,
    "origin_a": 1e-4,
    "defocus_u_a": 1e-2,
    "defocus_v_a": 1e-2,
    "defocus_angle_deg": 1e-4,
    "voltage_kv": 1e-3,
    "cs_mm": 1e-6,
    "amplitude_contrast": 1e-6,
    "phase_shift_deg": 1e-4,
    "bfactor_a2": 1e-3,
    "ctf_scale": 1e-6,
}
PARTIAL_MARK = ".partial-"

# (chunk of STAR rows) -> `(b, d, d//2+1, 2)` float32 transforms of those particles
Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class StoreLayout:
    """What a store's images are.

    Attributes
    ----------
    box_px
        Training box d in pixels (the transforms are `(d, d//2+1)`).
    full_box_px
        The particles' box D in pixels.
    pixel_size_a
        The particles' pixel size in Å (the training grid's is ``pixel_size_a * D / d``).
    precision
        ``"float32"`` (the transforms exactly) or ``"float16"``.
    """

    box_px: int
    full_box_px: int
    pixel_size_a: float
    precision: str

    @property
    def value_scale(self) -> float:
        """Factor the stored values carry: 1 for float32, ``1/D`` for float16.

        ``1/D`` makes the transforms orthonormal (values of the order of a pixel's), far
        from float16's overflow at 65504 even for the DC term of a box of 512 px.
        """
        return 1.0 if self.precision == "float32" else 1.0 / self.full_box_px

    def image_shape(self) -> tuple[int, int, int]:
        """`(d, d//2+1, 2)`: one particle's stored transform."""
        return (self.box_px, self.box_px // 2 + 1, 2)


def write_particle_store(
    path: str | Path,
    particle_set: ParticleSet,
    rows: np.ndarray,
    layout: StoreLayout,
    transform: Transform,
    chunk_particles: int = 256,
) -> None:
    """Write the store of the particles ``rows`` at ``path`` (atomically, in chunks).

    Parameters
    ----------
    path
        The store folder. An existing store (or partial store) there is replaced; any other
        non-empty folder is refused.
    particle_set
        The particles' metadata (copied into the table).
    rows
        `(P,)` STAR rows of the half set (written in increasing order).
    layout
        Box, pixel size and precision.
    transform
        Makes the `(b, d, d//2+1, 2)` float32 transforms of a chunk of rows; memory stays
        at one chunk whatever P.
    chunk_particles
        Particles per chunk.
    """
    final = Path(path)
    _check_replaceable(final)
    _remove_stale_partials(final)
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    partial = final.parent / f".{final.name}{PARTIAL_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    partial.mkdir(parents=True)
    try:
        _write_images(partial / IMAGES_FILE, rows, layout, transform, chunk_particles)
        np.savez(partial / TABLE_FILE, **_table(particle_set, rows))
        manifest = _manifest(partial, layout, len(rows), particle_set.star_path)
        manifest["stacks"] = stack_fingerprints(particle_set, rows)
        (partial / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        _move_into_place(partial, final)
    finally:
        if partial.exists():
            shutil.rmtree(partial)


def _check_replaceable(final: Path) -> None:
    """Refuse to replace anything at ``final`` but a (partial) store or an empty folder."""
    if not final.exists():
        return
    if not final.is_dir():
        raise InputError(final, "store folder", "a folder for the particle store", "a file")
    is_store = (final / MANIFEST_FILE).exists() or (final / IMAGES_FILE).exists()
    if not is_store and any(final.iterdir()):
        raise InputError(
            final,
            "store folder",
            "a particle store, an empty folder or nothing (it is replaced)",
            "a folder with other files (not overwritten)",
        )


def _remove_stale_partials(final: Path) -> None:
    """Remove partial stores that killed writers of ``final`` left beside it."""
    if not final.parent.is_dir():
        return
    for stale in final.parent.glob(f".{final.name}{PARTIAL_MARK}*"):
        logger.warning("removing %s, left by an interrupted store-particles", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _write_images(
    path: Path,
    rows: np.ndarray,
    layout: StoreLayout,
    transform: Transform,
    chunk_particles: int,
) -> None:
    """Stream the transforms of ``rows`` into the ``.npy`` file ``path``, chunk by chunk."""
    dtype = np.dtype(layout.precision)
    shape = (len(rows), *layout.image_shape())
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    start, last_log = time.perf_counter(), time.perf_counter()
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for first in range(0, len(rows), chunk_particles):
            chunk = rows[first : first + chunk_particles]
            handle.write(_stored_values(transform(chunk), chunk, layout).tobytes())
            if time.perf_counter() - last_log > 30.0:
                last_log = time.perf_counter()
                logger.info("stored %d of %d particles", first + len(chunk), len(rows))
    logger.info(
        "stored %d particles (%.1f MB) in %.1f s",
        len(rows),
        path.stat().st_size / 1e6,
        time.perf_counter() - start,
    )


def _stored_values(values: np.ndarray, chunk: np.ndarray, layout: StoreLayout) -> np.ndarray:
    """`(b, d, d//2+1, 2)` values of a chunk as stored (scaled, cast, C-contiguous)."""
    expected = (len(chunk), *layout.image_shape())
    if values.shape != expected:
        raise ValueError(f"transform gave shape {values.shape}, expected {expected}")
    if layout.value_scale != 1.0:
        values = values * np.float32(layout.value_scale)
    stored = np.ascontiguousarray(values, dtype=np.dtype(layout.precision))
    if not np.isfinite(stored).all():
        bad = int(chunk[np.flatnonzero(~np.isfinite(stored).reshape(len(chunk), -1).all(1))[0]])
        raise InputError(
            f"STAR row {bad + 1}",
            "image transform",
            f"finite values in {layout.precision}",
            "NaN or Inf (store.precision float32 holds any finite image)",
        )
    return stored


def _table(particle_set: ParticleSet, rows: np.ndarray) -> dict[str, Any]:
    """The rows, image names and metadata the store keeps (arrays, for its checks)."""
    names = np.asarray(particle_set.image_names(), dtype=str)[rows]
    table: dict[str, Any] = {"rows": rows, "image_names": names}
    for name in METADATA_FIELDS:
        table[name] = np.asarray(getattr(particle_set, name), dtype=np.float64)[rows]
    return table


def _manifest(folder: Path, layout: StoreLayout, count: int, star_path: Path) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "store_id": uuid.uuid4().hex,
        "particles": count,
        "box_px": layout.box_px,
        "full_box_px": layout.full_box_px,
        "pixel_size_a": layout.pixel_size_a,
        "precision": layout.precision,
        "value_scale": layout.value_scale,
        "star": str(star_path),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "file_bytes": {name: (folder / name).stat().st_size for name in (IMAGES_FILE, TABLE_FILE)},
    }


def _move_into_place(partial: Path, final: Path) -> None:
    """Rename the finished ``partial`` folder to ``final``, replacing an old store."""
    partial.chmod(0o777 & ~_umask())
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old)
    else:
        partial.rename(final)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the store ``path``; an :class:`InputError` when it is partial."""
    folder = Path(path)
    manifest_path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise InputError(folder, "store folder", "a particle store (store-particles)", "none")
    if not manifest_path.is_file():
        raise InputError(
            manifest_path,
            MANIFEST_FILE,
            "a complete particle store (store-particles writes its manifest last)",
            "no manifest: an interrupted or partial store",
            "Run store-particles again.",
        )
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(manifest_path, "file", "the store's JSON manifest", f"{err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(manifest_path, "format", FORMAT, repr(manifest.get("format")))
    for name, size in manifest["file_bytes"].items():
        found = (folder / name).stat().st_size if (folder / name).is_file() else None
        if found != size:
            raise InputError(folder / name, "size", f"{size} bytes (the manifest)", f"{found}")
    return manifest


class ParticleStore:
    """A checked store, read on demand (memory-mapped).

    Use :func:`open_particle_store`, which checks the store against its particles first.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], rows: np.ndarray) -> None:
        self.path = path
        self.manifest = manifest
        self.layout = StoreLayout(
            int(manifest["box_px"]),
            int(manifest["full_box_px"]),
            float(manifest["pixel_size_a"]),
            str(manifest["precision"]),
        )
        self.rows = rows
        self._position = np.full(int(rows.max()) + 1, -1, dtype=np.int64)
        self._position[rows] = np.arange(len(rows))
        self._images: np.ndarray | None = None

    @property
    def box_px(self) -> int:
        """Training box d of the stored transforms."""
        return self.layout.box_px

    def _mapped(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path / IMAGES_FILE, mmap_mode="r")
        return self._images

    def check_images(self) -> None:
        """Fail unless ``images.npy`` opens with the manifest's shape and dtype.

        Raises
        ------
        InputError
            Naming the file: a corrupt header (e.g. overwritten bytes), another shape or dtype.
        """
        path = self.path / IMAGES_FILE
        try:
            images = self._mapped()
        except Exception as err:  # numpy's header parser raises assorted errors on garbage
            raise InputError(path, "header", "a numpy .npy array", f"unreadable ({err})") from None
        expected = (int(self.manifest["particles"]), *self.layout.image_shape())
        if images.shape != expected or images.dtype != np.dtype(self.layout.precision):
            raise InputError(
                path,
                "shape",
                f"{expected} {self.layout.precision} (the manifest)",
                f"{images.shape} {images.dtype}",
            )

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Stored transforms of the particles ``indices`` (STAR rows, any order).

        Returns
        -------
        numpy.ndarray
            `(B, d, d//2+1, 2)` (real, imaginary) in the store's dtype, multiplied by
            ``layout.value_scale``.
        """
        indices = np.asarray(indices, dtype=np.int64)
        inside = indices < len(self._position)
        positions = np.where(inside, self._position[np.where(inside, indices, 0)], -1)
        if (positions < 0).any():
            missing = int(indices[np.flatnonzero(positions < 0)[0]])
            raise ValueError(f"STAR row {missing} is not in the store {self.path}")
        order = np.argsort(positions, kind="stable")
        out = np.empty((len(indices), *self.layout.image_shape()), dtype=self.layout.precision)
        out[order] = self._mapped()[positions[order]]  # increasing offsets: fewer seeks
        return out

    def close(self) -> None:
        """Release the memory map."""
        self._images = None

    def __getstate__(self) -> dict[str, Any]:
        # the memory map is reopened lazily in worker processes
        return {**self.__dict__, "_images": None}


def open_particle_store(
    path: str | Path, particle_set: ParticleSet, rows: np.ndarray
) -> ParticleStore:
    """Open the store at ``path`` after checking it holds the particles ``rows`` as they are.

    Checks, before any compute: a complete store (manifest present, file sizes), the same
    STAR rows and image names, the box and pixel size (relative tolerance
    ``PIXEL_SIZE_RTOL``) and every pose and CTF value (:data:`METADATA_FIELDS` tolerances).

    Parameters
    ----------
    path
        The store folder.
    particle_set
        The particles as the STAR file now gives them.
    rows
        `(P,)` STAR rows the store must hold (any order), e.g. the half set's.

    Raises
    ------
    InputError
        Naming the store file, the field, the expected and the found value.
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    _check_grid(folder / MANIFEST_FILE, manifest, particle_set)
    check_stacks(folder / MANIFEST_FILE, manifest, particle_set)
    table_path = folder / TABLE_FILE
    try:
        with np.load(table_path) as table:
            wanted = np.sort(np.asarray(rows, dtype=np.int64))
            _check_rows(table_path, table, particle_set, wanted)
            for name, tolerance in METADATA_FIELDS.items():
                _check_field(table_path, table, particle_set, name, tolerance)
            stored_rows = np.asarray(table["rows"])
    except (ValueError, OSError, KeyError) as err:
        raise InputError(table_path, "file", "the store's table (numpy .npz)", f"{err}") from None
    store = ParticleStore(folder, manifest, stored_rows)
    store.check_images()
    return store


def _check_grid(source: Path, manifest: dict[str, Any], particle_set: ParticleSet) -> None:
    if int(manifest["full_box_px"]) != particle_set.box_px:
        raise InputError(
            source,
            "full_box_px",
            f"{particle_set.box_px} px (the particles)",
            f"{manifest['full_box_px']} px",
        )
    pixel = float(manifest["pixel_size_a"])
    if not math.isclose(pixel, particle_set.pixel_size_a, rel_tol=PIXEL_SIZE_RTOL):
        raise InputError(
            source,
            "pixel_size_a",
            f"{particle_set.pixel_size_a:.6g} Å (the particles)",
            f"{pixel:.6g} Å",
        )


def _check_rows(source: Path, table: Any, particle_set: ParticleSet, rows: np.ndarray) -> None:
    stored = np.asarray(table["rows"])
    if not np.array_equal(stored, rows):
        extra = np.setdiff1d(stored, rows)
        missing = np.setdiff1d(rows, stored)
        raise InputError(
            source,
            "rows",
            f"the {len(rows)} STAR rows of the half set",
            f"{len(stored)} rows ({len(missing)} missing, {len(extra)} not in the half set)",
            "The STAR file or the half sets changed: run store-particles again.",
        )
    if rows.size and rows[-1] >= len(particle_set):
        raise InputError(source, "rows", f"rows < {len(particle_set)}", str(int(rows[-1])))
    names = np.asarray(particle_set.image_names(), dtype=str)[rows]
    differ = np.flatnonzero(names != np.asarray(table["image_names"]))
    if differ.size:
        first = differ[0]
        raise InputError(
            source,
            f"rlnImageName of STAR row {rows[first] + 1}",
            f"{names[first]} (the STAR file)",
            f"{table['image_names'][first]}",
            "The STAR file changed: run store-particles again.",
        )


def _check_field(
    source: Path, table: Any, particle_set: ParticleSet, name: str, tolerance: float
) -> None:
    rows = np.asarray(table["rows"])
    expected = np.asarray(getattr(particle_set, name), dtype=np.float64)[rows]
    found = np.asarray(table[name], dtype=np.float64)
    close = np.isclose(found, expected, rtol=0.0, atol=tolerance)
    if close.all():
        return
    bad = np.flatnonzero(~close.reshape(len(rows), -1).all(axis=1))[0]
    raise InputError(
        source,
        f"{name} of STAR row {rows[bad] + 1}",
        f"{np.array2string(expected[bad], precision=6)} (the STAR file, within {tolerance:g})",
        np.array2string(found[bad], precision=6),
        "The STAR file changed after the store was written: run store-particles again.",
    )
