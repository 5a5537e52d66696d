"""MRC volumes: reading with header checks, writing atomically with the voxel size."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from dynamight_core._version import __version__
from dynamight_core.errors import InputError, NonFiniteResultError
from dynamight_core.io.files import atomic_path
from dynamight_core.io.identity import MapOrigin, check_half_map_pair

logger = logging.getLogger(__name__)

_LABEL = f"dynamight-core {__version__}".encode()


def _label(mrc: mrcfile.mrcfile.MrcFile, origin: MapOrigin | None = None) -> None:
    """Replace mrcfile's time-stamped label, so identical data give identical files.

    A second label records the map's ``origin`` (what made it), when given.
    """
    mrc.header.label[0] = _LABEL
    mrc.header.nlabl = 1
    if origin is not None:
        mrc.header.label[1] = origin.label().encode()
        mrc.header.nlabl = 2


def _origin(mrc: mrcfile.mrcfile.MrcFile) -> MapOrigin | None:
    """The origin recorded in a map's header labels, if any."""
    count = min(int(mrc.header.nlabl), len(mrc.header.label))
    for raw in mrc.header.label[:count]:
        text = bytes(raw).decode("ascii", errors="replace").strip()
        origin = MapOrigin.parse(text)
        if origin is not None:
            return origin
    return None


@dataclass(frozen=True)
class Volume:
    """A cubic map with its voxel size.

    Attributes
    ----------
    data
        `(D, D, D)` float32 array indexed (z, y, x).
    voxel_size_a
        Voxel size in Å.
    path
        File it was read from (for error messages), if any.
    origin
        What made the map (from its header), if recorded.
    """

    data: np.ndarray
    voxel_size_a: float
    path: Path | None = None
    origin: MapOrigin | None = None

    @property
    def box_px(self) -> int:
        """Edge length in voxels."""
        return int(self.data.shape[0])


def read_volume(path: str | Path) -> Volume:
    """Read a cubic MRC map and check it is usable.

    Raises
    ------
    InputError
        If the file is missing, not a cubic 3D map, has no voxel size, or holds NaN/Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "an existing MRC map", "no such file")
    try:
        with mrcfile.open(path, mode="r", permissive=False) as mrc:
            data = np.asarray(mrc.data, dtype=np.float32).copy()
            voxel = float(mrc.voxel_size.x)
            origin = _origin(mrc)
    except ValueError as err:
        raise InputError(path, "header", "a valid MRC file", f"an unreadable file ({err})") from err
    if data.ndim != 3 or len(set(data.shape)) != 1:
        raise InputError(path, "shape", "a cubic 3D map", f"shape {data.shape}")
    if data.shape[0] % 2:
        raise InputError(
            path,
            "shape",
            "an even box size",
            f"{data.shape[0]}",
            "Resample or pad the map to an even box.",
        )
    if not voxel > 0:
        raise InputError(path, "voxel size", "a positive voxel size in the header", f"{voxel}")
    if not np.isfinite(data).all():
        raise InputError(path, "data", "finite voxel values", "NaN or Inf values")
    return Volume(data=data, voxel_size_a=voxel, path=path, origin=origin)


def check_volume_matches(volume: Volume, box_px: int, pixel_size_a: float, what: str) -> None:
    """Raise an :class:`InputError` if a map's box or voxel size differs from the particles'.

    Parameters
    ----------
    volume
        The map.
    box_px, pixel_size_a
        Box size and pixel size of the particle images.
    what
        Name of the map's role (e.g. ``"mask"``) for the message.
    """
    source = volume.path or what
    if volume.box_px != box_px:
        raise InputError(
            source,
            f"{what} box size",
            f"{box_px} px (as the particle images)",
            f"{volume.box_px} px",
        )
    if abs(volume.voxel_size_a - pixel_size_a) > 1e-3 * pixel_size_a:
        raise InputError(
            source,
            f"{what} voxel size",
            f"{pixel_size_a:.4f} Å (as the particle images)",
            f"{volume.voxel_size_a:.4f} Å",
        )


def check_same_grid(volume: Volume, reference: Volume, what: str) -> None:
    """Raise an :class:`InputError` unless ``volume`` has ``reference``'s box and voxel size.

    The error names ``volume``'s file (the one judged wrong), both boxes (px) or both voxel
    sizes (Å), and ``reference``'s file.

    Parameters
    ----------
    volume
        The map checked (e.g. the mask).
    reference
        The map it must match (e.g. the first half map).
    what
        The role of ``volume`` (e.g. ``"mask"``) for the message.
    """
    source = volume.path or what
    against = reference.path or "the first map"
    if volume.box_px != reference.box_px:
        raise InputError(
            source,
            f"{what} box size",
            f"{reference.box_px} px (as {against})",
            f"{volume.box_px} px",
        )
    if abs(volume.voxel_size_a - reference.voxel_size_a) > 1e-3 * reference.voxel_size_a:
        raise InputError(
            source,
            f"{what} voxel size",
            f"{reference.voxel_size_a:.4f} Å (as {against})",
            f"{volume.voxel_size_a:.4f} Å",
        )


def read_half_maps(paths: Sequence[str | Path]) -> tuple[Volume, Volume]:
    """Read two half maps and check they share one box and voxel size and are one pair.

    Raises
    ------
    InputError
        If either file is unusable (:func:`read_volume`), the second's grid differs from
        the first's (naming both files and both boxes or voxel sizes), or they are not an
        independent pair (:func:`~dynamight_core.io.identity.check_half_map_pair`: one file
        twice, identical data, one half twice, or halves of different reconstructions).
    """
    if len(paths) != 2:
        raise InputError("half maps", "files", "2 half maps", str(len(paths)))
    first, second = (read_volume(path) for path in paths)
    check_same_grid(second, first, "half map 2")
    identical = bool(np.array_equal(first.data, second.data))
    check_half_map_pair((paths[0], paths[1]), (first.origin, second.origin), identical)
    return first, second


MASK_TOLERANCE = 1e-3
"""How far (in mask units) a soft mask may stray outside [0, 1] (interpolation, float32)."""

MASK_MIN_PEAK = 0.5
"""The least maximum of a usable mask: windows and the masked region are where it is >= 0.5."""


def read_mask(path: str | Path, reference: Volume) -> Volume:
    """Read a soft mask in [0, 1] on ``reference``'s grid.

    Raises
    ------
    InputError
        Naming the mask file: unusable (:func:`read_volume`), of another box or voxel size
        than ``reference`` (both named), with values below 0 or above 1, or nowhere at least
        ``MASK_MIN_PEAK`` (an empty, zero or negative mask).
    """
    mask = read_volume(path)
    check_same_grid(mask, reference, "mask")
    low, high = float(mask.data.min()), float(mask.data.max())
    if low < -MASK_TOLERANCE or high > 1.0 + MASK_TOLERANCE:
        raise InputError(
            path,
            "mask values",
            "a soft mask with values in [0, 1]",
            f"values from {low:.4g} to {high:.4g}",
            "Give a mask made by make-mask or relion_mask_create, not a map",
        )
    if high < MASK_MIN_PEAK:
        raise InputError(
            path,
            "mask values",
            f"a mask that is at least {MASK_MIN_PEAK} somewhere",
            f"a maximum of {high:.4g}",
            "The mask is empty: make it again at a lower threshold",
        )
    return mask


def write_volume(
    path: str | Path, data: np.ndarray, voxel_size_a: float, origin: MapOrigin | None = None
) -> None:
    """Write a float32 map atomically, with its voxel size and origin 0.

    Parameters
    ----------
    path
        Destination ``.mrc`` file; the parent directory is created.
    data
        `(D, D, D)` array indexed (z, y, x).
    voxel_size_a
        Voxel size in Å.
    origin
        What made the map, recorded in a header label (half maps: kind, half, split).

    Raises
    ------
    NonFiniteResultError
        If ``data`` holds NaN or infinite values (nothing is written).
    """
    bad = int(np.size(data) - np.isfinite(data).sum())
    if bad:
        raise NonFiniteResultError(path, "map", bad)
    with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
        mrc.voxel_size = voxel_size_a
        _label(mrc, origin)
    logger.debug("wrote %s", path)


class StackWriter:
    """Write an image stack chunk by chunk through a memory map, atomically on close.

    Memory stays flat in the number of images: only the chunk being written is in RAM.

    Parameters
    ----------
    path
        Destination ``.mrcs`` file.
    n_images, box_px
        Stack shape `(n_images, box_px, box_px)`.
    pixel_size_a
        Pixel size in Å for the header.
    """

    def __init__(self, path: str | Path, n_images: int, box_px: int, pixel_size_a: float) -> None:
        self._final = Path(path)
        self._context = atomic_path(self._final)
        self._tmp = self._context.__enter__()
        self._mrc = mrcfile.new_mmap(
            self._tmp, shape=(n_images, box_px, box_px), mrc_mode=2, overwrite=True
        )
        self._mrc.set_image_stack()
        self._mrc.voxel_size = pixel_size_a
        _label(self._mrc)

    def __enter__(self) -> StackWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.close(success=exc_type is None)

    def write(self, start: int, images: np.ndarray) -> None:
        """Store `(B, D, D)` images at stack positions ``start .. start + B - 1`` (0-based)."""
        self._mrc.data[start : start + len(images)] = images.astype(np.float32)

    def close(self, success: bool = True) -> None:
        """Finish the file; on failure the partial file is discarded."""
        if success:
            self._mrc.update_header_stats()
        self._mrc.close()
        if success:
            self._context.__exit__(None, None, None)
        else:
            err = RuntimeError("stack writing aborted")
            self._context.__exit__(type(err), err, None)
