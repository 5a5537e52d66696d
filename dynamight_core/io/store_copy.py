"""A particle store copied to node-local scratch for the length of a job.

Clusters often keep projects on a network file system whose random reads are slow, and
give each job a fast local disk (``$TMPDIR``). :func:`local_store` copies a store there at
job start (into a subfolder named after the store's ``store_id``; a complete identical copy
left by an earlier job on the node is reused), yields the copy's path and removes the
copy when the job ends, whether it succeeds or fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from dynamight_core.errors import InputError
from dynamight_core.io.particle_store import MANIFEST_FILE, read_manifest

logger = logging.getLogger(__name__)

SETTING = "store.local_copy"


def expand_scratch(scratch: str) -> Path:
    """``scratch`` with ``~`` and environment variables (``$TMPDIR``) expanded.

    Raises
    ------
    InputError
        When a variable is not set (the path would still hold a ``$``).
    """
    expanded = str(Path(os.path.expandvars(scratch)).expanduser())
    if "$" in expanded:
        raise InputError(
            SETTING,
            "path",
            "a path whose environment variables are set",
            f"{scratch!r} (expands to {expanded!r})",
        )
    return Path(expanded)


def _is_identical_copy(copy: Path, manifest: dict[str, object]) -> bool:
    """Whether ``copy`` is a complete store with the same manifest (sizes checked)."""
    try:
        return read_manifest(copy) == manifest
    except (InputError, OSError, ValueError):
        return False


@contextlib.contextmanager
def local_store(store: str | Path, scratch: str | None) -> Iterator[Path]:
    """The store to read: ``store`` itself, or its copy under ``scratch`` while in use.

    Parameters
    ----------
    store
        A complete particle store.
    scratch
        Folder for the copy (environment variables expanded), or ``None`` to read in place.
        When it lacks the space, the store is read in place with a warning.
    """
    if scratch is None:
        yield Path(store)
        return
    manifest = read_manifest(store)
    root = expand_scratch(scratch)
    root.mkdir(parents=True, exist_ok=True)
    copy = root / f"dynamight_store_{manifest['store_id']}"
    size_bytes = sum(int(size) for size in manifest["file_bytes"].values())
    if _is_identical_copy(copy, manifest):
        logger.info("reusing the identical local copy %s of %s", copy, store)
    elif not _make_copy(Path(store), copy, size_bytes):
        yield Path(store)
        return
    try:
        yield copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)
        logger.info("removed the local copy %s", copy)


def _make_copy(store: Path, copy: Path, size_bytes: int) -> bool:
    """Copy ``store`` to ``copy`` (manifest last, then renamed); False when it cannot fit."""
    free_bytes = shutil.disk_usage(copy.parent).free
    if free_bytes < 1.05 * size_bytes:
        logger.warning(
            "%s: %.1f GB free, the store needs %.1f GB: reading %s in place",
            copy.parent,
            free_bytes / 1e9,
            size_bytes / 1e9,
            store,
        )
        return False
    shutil.rmtree(copy, ignore_errors=True)
    partial = copy.parent / f".{copy.name}.partial-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    try:
        shutil.copytree(store, partial, ignore=shutil.ignore_patterns(MANIFEST_FILE))
        shutil.copy2(store / MANIFEST_FILE, partial / MANIFEST_FILE)
        partial.rename(copy)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    seconds = time.perf_counter() - start
    logger.info(
        "copied the particle store %s to %s: %.2f GB in %.1f s (%.0f MB/s)",
        store,
        copy,
        size_bytes / 1e9,
        seconds,
        size_bytes / 1e6 / max(seconds, 1e-9),
    )
    return True
