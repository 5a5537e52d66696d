"""The image stacks a particle STAR file names, found with the standard library only.

The workflow declares every stack as an input of the stages that read images, so that a
changed ``.mrcs`` behind an unchanged STAR file re-runs them. The Snakefile imports this
module while it builds the job graph, before any job runs, so it must not import numpy,
pandas or torch. :mod:`dynamight_core.io.star` resolves stack names with the same rule.
"""

from __future__ import annotations

import shlex
from pathlib import Path

IMAGE_COLUMN = "_rlnImageName"


def _image_column_values(lines: list[str]) -> list[str]:
    """``rlnImageName`` of every row of the first loop that has that column."""
    values: list[str] = []
    columns: list[str] = []
    column = -1
    in_loop = False
    for raw in lines:
        line = raw.strip()
        if line.startswith("data_"):
            if column >= 0:
                break
            columns, in_loop = [], False
        elif line == "loop_":
            columns, in_loop = [], True
        elif in_loop and line.startswith("_"):
            columns.append(line.split()[0])
            column = columns.index(IMAGE_COLUMN) if IMAGE_COLUMN in columns else -1
        elif in_loop and column >= 0 and line and not line.startswith("#"):
            fields = shlex.split(line) if ('"' in line or "'" in line) else line.split()
            if len(fields) > column:
                values.append(fields[column])
    return values


def stack_names(star_path: str | Path) -> list[str]:
    """Distinct stack names in ``rlnImageName`` (``N@name``), in order of first use.

    Parameters
    ----------
    star_path
        RELION particle STAR file (3.0 or 3.1+).

    Returns
    -------
    list of str
        The names as written in the file (relative or absolute); empty when the file has
        no ``rlnImageName`` column (the stage that reads it reports that).
    """
    with open(star_path, encoding="utf-8", errors="replace") as handle:
        entries = _image_column_values(handle.readlines())
    return list(dict.fromkeys(entry.rpartition("@")[2] for entry in entries))


def stack_candidates(
    name: str, star_path: str | Path, project_root: str | Path | None
) -> list[Path]:
    """Where a stack ``name`` may be, in the order tried.

    An absolute name is used as it is; a relative one is looked up next to the STAR file,
    then in the RELION project folder (when given), then in the working directory.
    """
    if Path(name).is_absolute():
        return [Path(name)]
    bases = [Path(star_path).parent]
    if project_root is not None:
        bases.append(Path(project_root))
    bases.append(Path.cwd())
    return [base / name for base in bases]


def find_stack(name: str, star_path: str | Path, project_root: str | Path | None) -> Path | None:
    """The first existing candidate of :func:`stack_candidates`, or ``None``."""
    return next(
        (path for path in stack_candidates(name, star_path, project_root) if path.is_file()),
        None,
    )


def existing_stacks(star_path: str | Path, project_root: str | Path | None) -> list[str]:
    """The stacks of a STAR file that exist, as absolute paths (missing ones are left out).

    A missing stack is left to the stage that reads the STAR file, whose error names the
    file, the row and every folder it looked in.
    """
    found = (find_stack(name, star_path, project_root) for name in stack_names(star_path))
    return [str(path.resolve()) for path in found if path is not None]
