"""Fingerprints of a particle store's source stacks, and the check that they are unchanged.

A store holds transforms of the images in its source stacks; other images behind the same
STAR file (a stack rewritten, or replaced by another of the same name) must not train
silently. Each stack is fingerprinted by its size, modification time and the SHA-256 of a
few sampled blocks: cheap whatever its size, and enough to tell apart two stacks of other
images.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dynamight_core.errors import InputError
from dynamight_core.io.star import ParticleSet

logger = logging.getLogger(__name__)

SAMPLED_BLOCKS = 8
SAMPLED_BLOCK_BYTES = 1 << 16


def sampled_sha256(path: Path) -> str:
    """SHA-256 of ``SAMPLED_BLOCKS`` blocks spread over a file (first and last included).

    A cheap check that a file holds the same bytes: about half a megabyte read per file
    whatever its size; with the size, it tells apart any two stacks of other images.
    """
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    last = max(size - SAMPLED_BLOCK_BYTES, 0)
    starts = sorted({round(last * k / (SAMPLED_BLOCKS - 1)) for k in range(SAMPLED_BLOCKS)})
    with open(path, "rb") as handle:
        for start in starts:
            handle.seek(start)
            digest.update(handle.read(SAMPLED_BLOCK_BYTES))
    return digest.hexdigest()


def stack_fingerprints(particle_set: ParticleSet, rows: np.ndarray) -> dict[str, dict[str, Any]]:
    """Size (bytes), modification time (ns) and sampled hash of each stack of ``rows``."""
    used = np.unique(np.asarray(particle_set.file_index)[rows])
    prints = {}
    for index in used.tolist():
        path = Path(particle_set.image_files[index])
        status = path.stat()
        prints[str(path)] = {
            "bytes": status.st_size,
            "mtime_ns": status.st_mtime_ns,
            "sampled_sha256": sampled_sha256(path),
        }
    return prints


def check_stacks(source: Path, manifest: dict[str, Any], particle_set: ParticleSet) -> None:
    """Fail when a source stack the store was made from now holds other bytes.

    Stacks of the same size and modification time are taken as unchanged; otherwise (a
    copy, a touched file) the sampled hash decides. A store from before fingerprints is
    accepted with a warning.
    """
    recorded = manifest.get("stacks")
    if recorded is None:
        logger.warning("%s: no fingerprints of the source stacks: cannot check them", source)
        return
    now = {str(Path(p)) for p in particle_set.image_files}
    by_name: dict[str, list[str]] = {}
    for known in now:
        by_name.setdefault(Path(known).name, []).append(known)
    for name, expected in recorded.items():
        # a project moved as a whole: the same stack names in another folder
        moved = by_name.get(Path(name).name, [])
        path = Path(name) if name in now else Path(moved[0]) if len(moved) == 1 else None
        if path is None or not path.is_file():
            raise InputError(
                source,
                "stacks",
                f"the stack {name} among the STAR file's stacks",
                "a STAR file with other stacks",
                "Run store-particles again for this STAR file",
            )
        status = path.stat()
        if status.st_size == expected["bytes"] and status.st_mtime_ns == expected["mtime_ns"]:
            continue
        if (
            status.st_size != expected["bytes"]
            or sampled_sha256(path) != expected["sampled_sha256"]
        ):
            raise InputError(
                path,
                "images",
                f"the images the store {source.parent} was made from",
                "other bytes (changed since store-particles)",
                "Run store-particles again",
            )
