"""Particle image stacks: validation and lazy, memory-mapped reading.

Images are never loaded as a whole: every read maps the ``.mrcs`` file and copies only the
requested slices, so memory use does not grow with the number of particles.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import mrcfile
import numpy as np

from dynamight_core.errors import InputError
from dynamight_core.io.star import ParticleSet

logger = logging.getLogger(__name__)

_MRC_MODE_BYTES = {0: 1, 1: 2, 2: 4, 6: 2, 12: 2}
SCAN_CHUNK_IMAGES = 1024
# a stack's header pixel size may differ from the STAR file's by this fraction (the header
# keeps the cell in float32, and RELION rounds pixel sizes it writes) before a warning
PIXEL_SIZE_RTOL = 1e-3
PIXEL_SIZE_WARNINGS = 5


def _stack_header(path: Path) -> tuple[int, int, int, int, int, float]:
    """(nx, ny, nz, mode, data offset in bytes, pixel size in Å or 0) from an MRC header.

    The pixel size is the cell's x length over its sampling ``mx`` (0 when ``mx`` is 0).
    """
    try:
        with mrcfile.open(path, mode="r", header_only=True, permissive=False) as mrc:
            header = mrc.header
            mx = int(header.mx)
            return (
                int(header.nx),
                int(header.ny),
                int(header.nz),
                int(header.mode),
                1024 + int(header.nsymbt),
                float(header.cella.x) / mx if mx > 0 else 0.0,
            )
    except ValueError as err:
        raise InputError(
            path, "header", "a valid MRC stack", f"an unreadable header ({err})"
        ) from err


def pixel_size_differs(header_a: float, star_a: float) -> bool:
    """Whether a stack's header pixel size (Å) disagrees with the STAR file's.

    A header pixel size of 0 (or not finite) means "not recorded" and never disagrees; any
    other value, 1.0 included (RELION writes the real one), must agree with
    ``rlnImagePixelSize`` to a relative :data:`PIXEL_SIZE_RTOL`.
    """
    if not math.isfinite(header_a) or header_a <= 0.0:
        return False
    return not math.isclose(header_a, star_a, rel_tol=PIXEL_SIZE_RTOL)


def warn_pixel_sizes(header_a: dict[Path, float], star_a: float) -> int:
    """One warning line per stack whose header pixel size is not the STAR file's.

    ``header_a``: each stack's header pixel size in Å. At most :data:`PIXEL_SIZE_WARNINGS`
    stacks are named, the rest counted in one more line. Returns how many disagree; the
    STAR file's value is the one used.
    """
    differing = [
        (path, size) for path, size in header_a.items() if pixel_size_differs(size, star_a)
    ]
    for path, size in differing[:PIXEL_SIZE_WARNINGS]:
        logger.warning(
            "%s: the stack header's pixel size is %.4f Å, the STAR file's rlnImagePixelSize "
            "%.4f Å; using the STAR file's (were the particles rescaled without updating "
            "one of them?)",
            path,
            size,
            star_a,
        )
    if len(differing) > PIXEL_SIZE_WARNINGS:
        logger.warning(
            "%d more stacks have a header pixel size other than the STAR file's %.4f Å",
            len(differing) - PIXEL_SIZE_WARNINGS,
            star_a,
        )
    return len(differing)


def validate_stacks(particle_set: ParticleSet, scan_values: bool = True) -> None:
    """Check every stack the STAR file refers to, before any compute.

    Checks: readable header, square even images of the size given by the optics table,
    the header's pixel size against the STAR file's (a warning, see
    :func:`warn_pixel_sizes`),
    a data block as long as the header says (not truncated), every ``rlnImageName`` index
    inside its stack, and (when ``scan_values``) finite pixel values.

    Parameters
    ----------
    particle_set
        Metadata read by :func:`~dynamight_core.io.star.read_particles`. Its ``box_px`` is
        filled in from the first stack for legacy STAR files without an optics table.
    scan_values
        Also read every referenced image once to look for NaN/Inf pixels.
    """
    header_pixel_sizes: dict[Path, float] = {}
    for file_number, path in enumerate(particle_set.image_files):
        nx, ny, nz, mode, offset, header_pixel_sizes[path] = _stack_header(path)
        if nx != ny:
            raise InputError(path, "image shape", "square images", f"{nx} x {ny} px")
        if nx % 2:
            raise InputError(
                path,
                "image size",
                "an even box size",
                f"{nx} px",
                "Re-extract or pad the particles to an even box.",
            )
        if particle_set.box_px == 0:
            particle_set.box_px = nx
        if nx != particle_set.box_px:
            raise InputError(
                path,
                "image size",
                f"{particle_set.box_px} px (rlnImageSize of the optics table)",
                f"{nx} px",
            )
        if mode not in _MRC_MODE_BYTES:
            raise InputError(path, "mode", "a real-valued MRC mode (0, 1, 2, 6 or 12)", f"{mode}")
        expected = offset + nx * ny * nz * _MRC_MODE_BYTES[mode]
        size = path.stat().st_size
        if size < expected:
            raise InputError(
                path,
                "data block",
                f"{expected} bytes for {nz} images",
                f"{size} bytes (truncated file)",
            )
        used = particle_set.slice_index[particle_set.file_index == file_number]
        if used.size and used.max() >= nz:
            raise InputError(
                particle_set.star_path,
                "rlnImageName",
                f"an image index <= {nz} (images in {path.name})",
                f"{int(used.max()) + 1}@{path.name}",
            )
        if scan_values and used.size:
            _scan_finite(path, np.unique(used))
    warn_pixel_sizes(header_pixel_sizes, particle_set.pixel_size_a)


def _scan_finite(path: Path, used: np.ndarray) -> None:
    with mrcfile.mmap(path, mode="r", permissive=True) as mrc:
        data = mrc.data
        for start in range(0, len(used), SCAN_CHUNK_IMAGES):
            chunk = used[start : start + SCAN_CHUNK_IMAGES]
            images = np.asarray(data[chunk[0] : chunk[-1] + 1])[chunk - chunk[0]]
            finite = np.isfinite(images).reshape(len(chunk), -1).all(axis=1)
            if not finite.all():
                bad = int(chunk[np.flatnonzero(~finite)[0]]) + 1
                raise InputError(path, f"image {bad}", "finite pixel values", "NaN or Inf")


class ImageSource:
    """Reads particle images on demand from memory-mapped stacks.

    Parameters
    ----------
    particle_set
        Validated metadata (see :func:`validate_stacks`).
    """

    def __init__(self, particle_set: ParticleSet) -> None:
        self._set = particle_set
        self._maps: dict[int, mrcfile.mrcmemmap.MrcMemmap] = {}

    def _stack(self, file_number: int) -> np.ndarray:
        if file_number not in self._maps:
            path = self._set.image_files[file_number]
            self._maps[file_number] = mrcfile.mmap(path, mode="r", permissive=True)
        data = self._maps[file_number].data
        return data if data.ndim == 3 else data[None]

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Images of the particles ``indices`` (rows of the STAR file).

        Returns
        -------
        numpy.ndarray
            `(B, D, D)` float32 images, indexed (y, x).
        """
        indices = np.asarray(indices, dtype=np.int64)
        box = self._set.box_px
        out = np.empty((len(indices), box, box), dtype=np.float32)
        files = self._set.file_index[indices]
        slices = self._set.slice_index[indices]
        for file_number in np.unique(files):
            where = np.flatnonzero(files == file_number)
            out[where] = self._stack(int(file_number))[slices[where]]
        return out

    def close(self) -> None:
        """Release the memory maps."""
        for mrc in self._maps.values():
            mrc.close()
        self._maps.clear()

    def __getstate__(self) -> dict[str, object]:
        # memory maps are reopened lazily in worker processes
        return {"_set": self._set, "_maps": {}}
