"""Editing copies of a dataset's STAR file in tests (the original stays untouched), and a
RELION project folder made from a dataset."""

from __future__ import annotations

import re
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


def relion_project(folder: Path, dataset: Path, star: str, job: str) -> None:
    """A RELION project in ``folder``: the dataset's stacks under Extract/job005/, its STAR
    file at ``star`` with RELION's project-relative image names, and the ``job`` folder."""
    extract = folder / "Extract" / "job005"
    extract.mkdir(parents=True)
    for stack in dataset.glob("*.mrcs"):
        shutil.copy(stack, extract / stack.name)
    text = (dataset / "particles.star").read_text()
    text = re.sub(r"(\d+)@(?!/)(\S+\.mrcs)", r"\1@Extract/job005/\2", text)
    (folder / star).parent.mkdir(parents=True)
    (folder / star).write_text(text)
    (folder / job).mkdir(parents=True)  # RELION makes the job folder before it runs the job
