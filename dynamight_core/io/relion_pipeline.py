"""Files that a RELION-5 "External" job leaves for RELION's pipeliner.

RELION runs an External job's program with ``--o External/jobNNN/`` from the project
folder, then waits for a marker file in that folder: ``RELION_JOB_EXIT_SUCCESS``,
``RELION_JOB_EXIT_FAILURE`` or ``RELION_JOB_EXIT_ABORTED`` (its "Abort" button asks for
the last one by creating ``RELION_JOB_ABORT_NOW``). On success it reads
``RELION_OUTPUT_NODES.star``: the job's outputs, named relative to the project folder,
each with a node type label, which become the job's output nodes (inputs of later jobs,
shown by "Display:"). The labels are RELION-5's generic input-node labels
(``pipeline_jobs.h``, ``LABEL_*_CPIPE``). Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from dynamight_core.io.files import atomic_path

OUTPUT_NODES_FILE = "RELION_OUTPUT_NODES.star"
EXIT_SUCCESS = "RELION_JOB_EXIT_SUCCESS"
EXIT_FAILURE = "RELION_JOB_EXIT_FAILURE"
EXIT_ABORTED = "RELION_JOB_EXIT_ABORTED"
EXIT_MARKS = (EXIT_SUCCESS, EXIT_FAILURE, EXIT_ABORTED)
ABORT_NOW = "RELION_JOB_ABORT_NOW"

# RELION-5 node type labels (pipeline_jobs.h)
LABEL_MAP = "DensityMap.mrc"
LABEL_HALFMAP = "DensityMap.mrc.halfmap"
LABEL_MASK = "Mask3D.mrc"
LABEL_RESMAP = "Image3D.mrc.localresmap"
LABEL_ATOMCOORDS = "AtomCoords.cif"

# the workflow's outputs that RELION gets as output nodes: (path in output_dir, label)
WORKFLOW_OUTPUT_NODES: tuple[tuple[str, str], ...] = (
    ("deformed/half1.mrc", LABEL_HALFMAP),
    ("deformed/half2.mrc", LABEL_HALFMAP),
    ("deformed/full.mrc", LABEL_MAP),
    ("postprocess/deformed/sharpened.mrc", LABEL_MAP),
    ("postprocess/mask.mrc", LABEL_MASK),
    ("local_resolution/deformed.mrc", LABEL_RESMAP),
    ("explore/half1/pseudo_atoms.cif", LABEL_ATOMCOORDS),
    ("explore/half2/pseudo_atoms.cif", LABEL_ATOMCOORDS),
    ("consensus/half1.mrc", LABEL_HALFMAP),
    ("consensus/half2.mrc", LABEL_HALFMAP),
)

STAR_VERSION = "# version 50001"


def _star_value(text: str) -> str:
    """``text`` as one STAR value: quoted when it holds whitespace or is empty."""
    if text and not any(char.isspace() for char in text):
        return text
    if '"' in text or "\n" in text:
        raise ValueError(f"cannot write {text!r} as a STAR value")
    return f'"{text}"'


def write_output_nodes(job_dir: str | os.PathLike[str], nodes: Sequence[tuple[str, str]]) -> Path:
    """Write ``RELION_OUTPUT_NODES.star`` in ``job_dir`` (atomically).

    Parameters
    ----------
    job_dir
        The job's folder (``--o``).
    nodes
        ``(name, type label)`` per output; names relative to the RELION project folder,
        as ``External/job012/deformed/half1.mrc``. May be empty.

    Returns
    -------
    Path
        The file written.
    """
    lines = [
        STAR_VERSION,
        "",
        "data_output_nodes",
        "",
        "loop_",
        "_rlnPipeLineNodeName #1",
        "_rlnPipeLineNodeTypeLabel #2",
        *(f"{_star_value(name)} {_star_value(label)}" for name, label in nodes),
        "",
        "",
    ]
    path = Path(job_dir) / OUTPUT_NODES_FILE
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path


def existing_output_nodes(
    output_dir: str | os.PathLike[str],
    node_prefix: str,
    table: Sequence[tuple[str, str]] = WORKFLOW_OUTPUT_NODES,
) -> list[tuple[str, str]]:
    """The entries of ``table`` whose file exists in ``output_dir``, named for RELION.

    Parameters
    ----------
    output_dir
        Folder the table's paths are relative to (the workflow's ``output_dir``).
    node_prefix
        How RELION names ``output_dir``: the job folder relative to the project folder
        (``External/job012``).
    table
        ``(path relative to output_dir, type label)`` pairs.

    Returns
    -------
    list of (str, str)
        ``(node name, label)`` for each existing output, in the table's order.
    """
    root = Path(output_dir)
    return [
        (str(PurePosixPath(node_prefix) / relative), label)
        for relative, label in table
        if (root / relative).is_file()
    ]


def clear_exit_marks(job_dir: str | os.PathLike[str]) -> list[str]:
    """Remove the ``RELION_JOB_EXIT_*`` files of an earlier attempt; returns their names."""
    removed = []
    for name in EXIT_MARKS:
        path = Path(job_dir) / name
        if path.exists():
            path.unlink()
            removed.append(name)
    return removed


def _mark(job_dir: str | os.PathLike[str], name: str) -> Path:
    """Leave ``name`` as the job's only exit mark (an empty file)."""
    for other in EXIT_MARKS:
        if other != name:
            (Path(job_dir) / other).unlink(missing_ok=True)
    path = Path(job_dir) / name
    path.touch()
    return path


def mark_exit(job_dir: str | os.PathLike[str], success: bool) -> Path:
    """Create ``RELION_JOB_EXIT_SUCCESS`` (or ``..._FAILURE``): the job has ended.

    Any other exit mark is removed first, so that RELION sees exactly one.
    """
    return _mark(job_dir, EXIT_SUCCESS if success else EXIT_FAILURE)


def abort_requested(job_dir: str | os.PathLike[str]) -> bool:
    """Whether RELION's "Abort" has asked the job to stop (``RELION_JOB_ABORT_NOW``)."""
    return (Path(job_dir) / ABORT_NOW).exists()


def mark_aborted(job_dir: str | os.PathLike[str]) -> Path:
    """Acknowledge an abort: ``RELION_JOB_EXIT_ABORTED`` in, ``RELION_JOB_ABORT_NOW`` out."""
    path = _mark(job_dir, EXIT_ABORTED)
    (Path(job_dir) / ABORT_NOW).unlink(missing_ok=True)
    return path
