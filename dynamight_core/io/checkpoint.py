"""Internal checkpoints of long stages: tensors plus the settings that produced them.

Files hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``. A checkpoint written with other settings or by another
package version is ignored (with a warning) rather than resumed, so a resumed run always
continues exactly the computation it interrupted. Checkpoints live outside the outputs a
workflow declares: Snakemake deletes declared outputs of failed jobs, not these.

One writer per folder: a :class:`Checkpointer` holds an exclusive ``flock`` on
``<folder>/.lock`` from its creation until the process ends (or :meth:`Checkpointer.clear`),
so a second copy of a stage (an orphan left by a killed Snakemake, a second manual run)
stops at once with :class:`~dynamight_core.errors.CheckpointInUseError` naming the holder's
host and PID. ``flock`` works on local file systems and on NFS v4 (the Linux client maps it
to NFS byte-range locks); where the file system refuses locks (some NFS v3 mounts with
``nolock``, Lustre without ``-o flock``) the stage warns and runs unlocked. A checkpoint
that cannot be read (truncated, garbage) is renamed ``<name>.pt.corrupt-<time>`` with a
warning and the stage starts afresh.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch

from dynamight_core._version import __version__
from dynamight_core.errors import CheckpointInUseError, InputError
from dynamight_core.io.files import atomic_path
from dynamight_core.logs import LOCK_HELD, lock_holder

logger = logging.getLogger(__name__)

FORMAT = 3
LOCK_NAME = ".lock"


def lock_folder(folder: Path) -> IO[str] | None:
    """Hold an exclusive lock on ``<folder>/.lock`` (created with the folder if needed).

    Returns the open lock file (the lock lasts while it is open, at most until the process
    ends), or ``None`` when the file system does not support ``flock`` (with a warning).

    Raises
    ------
    CheckpointInUseError
        When another process holds the lock; the error names its host and PID.
    """
    path = folder / LOCK_NAME
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open for the stage's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.seek(0)
            holder = handle.read().strip() or "another process (no holder recorded)"
            handle.close()
            if err.errno in LOCK_HELD:
                raise CheckpointInUseError(folder, holder) from None
            logger.warning(
                "cannot lock %s (%s): this file system does not support flock, so a second "
                "copy of this stage would not be stopped",
                path,
                err.strerror,
            )
            return None
        # the previous holder may have removed the folder between our open and flock
        try:
            current = path.stat().st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(lock_holder() + "\n")
    handle.flush()
    return handle


def set_aside(path: Path, reason: str) -> None:
    """Rename an unreadable checkpoint to ``<name>.corrupt-<time>`` and warn."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    try:
        path.replace(aside)
    except OSError as err:
        raise InputError(
            path, "checkpoint", "a readable checkpoint", reason, f"Delete it ({err.strerror})"
        ) from err
    logger.warning(
        "checkpoint %s is unreadable (%s); moved it to %s and starting this stage afresh",
        path,
        reason,
        aside.name,
    )


class Checkpointer:
    """Saves and restores the state of one stage in a folder.

    Parameters
    ----------
    folder
        Folder for this stage's checkpoint files (created at once: it holds the lock).
    stage
        Stage name, stored and checked on load.
    settings
        Everything that determines the computation (JSON-like values); a checkpoint made
        with different settings is not resumed.
    every
        Save every ``every`` steps (see :meth:`due`).

    Raises
    ------
    CheckpointInUseError
        When another running process holds ``folder`` (see :func:`lock_folder`).
    """

    def __init__(
        self, folder: str | Path, stage: str, settings: Mapping[str, Any], every: int = 1
    ) -> None:
        self.folder = Path(folder)
        self.stage = stage
        self.settings = dict(settings)
        self.every = max(1, every)
        self._lock: IO[str] | None = None
        self._lock = lock_folder(self.folder)

    def due(self, step: int) -> bool:
        """Whether to save after completing ``step`` (1-based)."""
        return step % self.every == 0

    def save(self, name: str, state: Mapping[str, Any]) -> None:
        """Write ``state`` as ``<folder>/<name>.pt`` atomically."""
        payload = {
            "format": FORMAT,
            "stage": self.stage,
            "version": __version__,
            "settings": self.settings,
            "state": dict(state),
        }
        with atomic_path(self.folder / f"{name}.pt") as tmp:
            torch.save(payload, tmp)

    def load(self, name: str) -> dict[str, Any] | None:
        """The state saved as ``name``, or ``None`` if absent or made with other settings.

        An unreadable file is set aside (see :func:`set_aside`) and ``None`` returned.
        """
        path = self.folder / f"{name}.pt"
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated zip, garbage, empty file: all unusable
            set_aside(path, f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}")
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("state"), dict):
            set_aside(path, f"not a checkpoint (a {type(payload).__name__})")
            return None
        same = (
            payload.get("format") == FORMAT
            and payload.get("stage") == self.stage
            and payload.get("version") == __version__
            and payload.get("settings") == self.settings
        )
        if not same:
            logger.warning("ignoring checkpoint %s: written with other settings or version", path)
            return None
        return payload["state"]

    def clear(self) -> None:
        """Remove the checkpoint folder (after the stage's outputs are written); unlock."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.release()

    def release(self) -> None:
        """Give up the folder's lock (also done when this object or the process ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __del__(self) -> None:
        self.release()


def write_model_file(
    path: str | Path,
    kind: str,
    config: Mapping[str, Any],
    module: torch.nn.Module,
    extra: Mapping[str, Any],
) -> None:
    """Write a model file atomically, loadable with ``weights_only=True``.

    It holds ``kind``, the package version, ``config`` (to rebuild the module), the state
    dict on the CPU and an ``extra`` record.
    """
    payload = {
        "kind": kind,
        "version": __version__,
        "config": dict(config),
        "extra": dict(extra),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_model_file(path: str | Path, kind: str) -> dict[str, Any]:
    """The payload of a model file of ``kind`` written by :func:`write_model_file`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", f"a {kind} file", "no such file")
    payload = _load_model_payload(path, f"a {kind} file")
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        found = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(path, "kind", f"a {kind} file", repr(found))
    return payload


def model_kind(path: str | Path) -> str | None:
    """The ``kind`` of a model file written by :func:`write_model_file` (None if it has none)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "a model file", "no such file")
    payload = _load_model_payload(path, "a model file")
    return payload.get("kind") if isinstance(payload, dict) else None


def _load_model_payload(path: Path, expected: str) -> Any:
    """``torch.load(weights_only=True)`` of ``path``; an :class:`InputError` if it fails.

    A file that is not a saved torch object (a CSV, a STAR file, an empty or truncated file)
    makes ``torch.load`` raise one of many exception types (``UnpicklingError``,
    ``EOFError``, ``IndexError``, ``RuntimeError``, ...); all mean the same: the wrong file.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InputError(
            path, "file", expected, f"a file torch cannot read ({type(error).__name__})"
        ) from None
