"""Editing copies of a dataset's STAR file in tests (the original stays untouched)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import starfile


def copy_dataset(dataset: Path, tmp_path: Path) -> Path:
    """A copy of the dataset folder ``dataset`` under ``tmp_path``."""
    target = tmp_path / "copy"
    shutil.copytree(dataset, target)
    return target


def edit_star(star: Path, edit: Callable[[dict], None]) -> None:
    """Read ``star``'s blocks, let ``edit`` change them in place, write the file back."""
    blocks = starfile.read(star, always_dict=True)
    edit(blocks)
    starfile.write(blocks, star, overwrite=True)
