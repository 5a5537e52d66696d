"""Atomic file writes (outputs appear complete or not at all), JSON and file hashes.

Outputs get the permissions an ordinary ``open`` would give them (``0666`` less the umask),
so that a group sharing a project folder can read them; ``tempfile`` alone makes ``0600``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place on success.

    The temporary file lives in the same directory, so the final ``os.replace`` is atomic
    on POSIX file systems. On an exception the temporary file is removed and ``path`` is
    left untouched.

    Parameters
    ----------
    path
        Final destination.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            tmp.chmod(0o666 & ~_umask())
        tmp.replace(final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks (memory stays flat)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, ±inf) inside it replaced by ``None``.

    Mappings, lists and tuples are copied; numpy scalars become Python numbers.
    """
    if isinstance(value, Mapping):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Write ``record`` as indented JSON atomically; NaN and infinities become ``null``.

    JSON has no NaN or Infinity; Python's default would write them anyway and leave a
    file other readers reject. ``null`` says "no value" in every reader.
    """
    text = json.dumps(finite_or_none(record), indent=2, allow_nan=False, default=str)
    write_text_atomic(path, text + "\n")
