"""Internal checkpoints of long stages: tensors plus the settings that produced them.

Files hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``. A checkpoint written with other settings or by another
package version is ignored (with a warning) rather than resumed, so a resumed run always
continues exactly the computation it interrupted. Checkpoints live outside the outputs a
workflow declares: Snakemake deletes declared outputs of failed jobs, not these.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dynamight_core._version import __version__
from dynamight_core.errors import InputError
from dynamight_core.io.files import atomic_path

logger = logging.getLogger(__name__)

FORMAT = 1


class Checkpointer:
    """Saves and restores the state of one stage in a folder.

    Parameters
    ----------
    folder
        Folder for this stage's checkpoint files (created on first save).
    stage
        Stage name, stored and checked on load.
    settings
        Everything that determines the computation (JSON-like values); a checkpoint made
        with different settings is not resumed.
    every
        Save every ``every`` steps (see :meth:`due`).
    """

    def __init__(
        self, folder: str | Path, stage: str, settings: Mapping[str, Any], every: int = 1
    ) -> None:
        self.folder = Path(folder)
        self.stage = stage
        self.settings = dict(settings)
        self.every = max(1, every)

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
        """The state saved as ``name``, or ``None`` if absent or made with other settings."""
        path = self.folder / f"{name}.pt"
        if not path.is_file():
            return None
        payload = torch.load(path, map_location="cpu", weights_only=True)
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
        """Remove the checkpoint folder (after the stage's outputs are written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


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
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        found = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
        raise InputError(path, "kind", f"a {kind} file", repr(found))
    return payload
