"""Subsets of a RELION particle STAR file, written by copying the file's own text.

RELION reads back exactly what it wrote. Re-writing a particle table through a DataFrame
changes things RELION and its users rely on: float formatting (``%.6f`` where RELION wrote
``12345.678901`` or ``1.244000``), integer columns that become floats when a table is
empty or has a missing value, zero-padded image names, quoting, comments such as
``# version 30001``, the optics block and any extra block. So a subset here is the source
file's lines, byte for byte, with the data rows of the left-out particles removed: every
column, every block, the row order, the line endings and the number formatting stay as
RELION wrote them.

The text is parsed by a small line-based parser and cross-checked against ``starfile``
before anything is written: both must find the same columns and the same number of
particle rows, and every row must hold one value per column. Outputs are written
atomically, and never over the source file.
"""

from __future__ import annotations

import io
import linecache
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from dynamight_core.errors import InputError
from dynamight_core.io.files import atomic_path

logger = logging.getLogger(__name__)

# One STAR value: a quoted string (closed by its quote before whitespace or the line's end)
# or a run of non-blank characters.
_TOKEN = re.compile(rb"\"[^\"]*\"(?=\s|$)|'[^']*'(?=\s|$)|\S+")


@dataclass
class _Block:
    """One ``data_`` block of a STAR file as found by :func:`_parse_lines`.

    Attributes
    ----------
    name
        The block name (``"particles"`` for ``data_particles``; ``""`` for ``data_``).
    columns
        The loop's column names without the leading ``_`` (empty when it has no loop).
    rows
        0-based indices of the loop's data-row lines, in file order.
    has_loop
        Whether the block has a ``loop_`` table (a block of ``_key value`` lines has not).
    """

    name: str
    columns: list[str]
    rows: list[int]
    has_loop: bool = False


@dataclass(frozen=True)
class _ParticleLoop:
    """The particle rows of a checked source file.

    Attributes
    ----------
    lines
        Every line of the file as bytes, line endings included.
    rows
        `(N,)` 0-based line indices of the N particle rows, in file order.
    block
        The particle block's name.
    columns
        The particle loop's column names.
    """

    lines: list[bytes]
    rows: np.ndarray
    block: str
    columns: list[str]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _parse_lines(source: Path, lines: Sequence[bytes]) -> list[_Block]:
    """Find the blocks, loop headers and data rows of a STAR file's lines.

    A block starts at a line beginning ``data_``. Its loop starts at a ``loop_`` line; the
    header is the run of lines beginning ``_`` right after it. Data rows are the non-blank
    lines not starting ``#`` after the header, up to the next ``data_`` line or the end.

    Parameters
    ----------
    source
        The file (for error messages).
    lines
        The file's lines as bytes.

    Returns
    -------
    list[_Block]
        The blocks in file order.
    """
    blocks: list[_Block] = []
    state = "outside"  # outside | preamble | header | data
    for index, raw in enumerate(lines):
        text = raw.strip()
        if text.startswith(b"data_"):
            blocks.append(_Block(_decode(text[5:]), [], []))
            state = "preamble"
            continue
        if state == "preamble" and text.startswith(b"loop_"):
            blocks[-1].has_loop = True
            state = "header"
            continue
        if state == "header":
            if text.startswith(b"_"):
                blocks[-1].columns.append(_decode(text.split()[0][1:]))
                continue
            state = "data"
        if state == "data" and text and not text.startswith(b"#"):
            if text.startswith(b"loop_"):
                raise InputError(
                    source,
                    f"line {index + 1}",
                    f"one loop in block data_{blocks[-1].name}",
                    "a second loop_",
                )
            blocks[-1].rows.append(index)
    return blocks


def _count_fields(raw: bytes) -> int:
    """Number of values on a data row, up to a value starting with ``#`` (a comment)."""
    count = 0
    for token in _TOKEN.findall(raw):
        if token.startswith(b"#"):
            break
        count += 1
    return count


def _read_with_starfile(path: Path) -> dict[str, object]:
    """``starfile.read(path, always_dict=True)``, any failure as an :class:`InputError`.

    ``starfile`` reads through :mod:`linecache`, which keeps a file's old lines when a
    parse fails half-way; clearing it before and after makes each read see the file as
    it is now.
    """
    linecache.clearcache()
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as exc:  # a parse error of any kind, from starfile or pandas
        raise InputError(
            path,
            "STAR syntax",
            "a file the starfile package can read",
            f"{type(exc).__name__}: {exc}",
        ) from exc
    finally:
        linecache.clearcache()
    return dict(blocks)


def _particle_block(source: Path, blocks: list[_Block]) -> _Block:
    """The ``data_particles`` block, or a legacy file's one block with ``rlnImageName``."""
    named = [block for block in blocks if block.name == "particles"]
    if len(named) > 1:
        raise InputError(source, "data_particles", "one particles block", f"{len(named)}")
    if named:
        block = named[0]
        if not block.has_loop:
            raise InputError(source, "data_particles", "a loop_ table", "no loop_")
        return block
    if any(block.name == "optics" for block in blocks):
        raise InputError(
            source,
            "data_particles",
            "a particles block next to data_optics (RELION 3.1+)",
            "data_optics only",
        )
    legacy = [block for block in blocks if "rlnImageName" in block.columns]
    if len(legacy) != 1:
        raise InputError(
            source,
            "_rlnImageName",
            "one loop with an _rlnImageName column (data_particles, or a RELION 3.0 file)",
            f"{len(legacy)} such loops",
        )
    return legacy[0]


def _check_keep(source: Path, keep: np.ndarray) -> np.ndarray:
    values = np.asarray(keep)
    if values.dtype != np.bool_ or values.ndim != 1:
        raise InputError(
            source,
            "keep",
            "a one-dimensional boolean array (one value per particle row)",
            f"dtype {values.dtype}, shape {values.shape}",
        )
    return values


def _same_file(first: Path, second: Path) -> bool:
    if first.resolve() == second.resolve():
        return True
    if first.exists() and second.exists():
        return first.samefile(second)
    return False


def _check_outputs(source: Path, outputs: Sequence[Path]) -> None:
    """Refuse an output that is the source file, or two outputs that are one file."""
    for out in outputs:
        if _same_file(source, out):
            raise InputError(
                source,
                "output",
                "an output file other than the input STAR file",
                f"{out}, the input itself",
                "Choose another output name; the input is never overwritten",
            )
    for position, out in enumerate(outputs):
        for other in outputs[position + 1 :]:
            if _same_file(out, other):
                raise InputError(
                    source,
                    "output",
                    "two different files for the selection and its complement",
                    f"{out} for both",
                )


def _load_particles(source: Path, keep: np.ndarray) -> _ParticleLoop:
    """Parse ``source``, find its particle rows and cross-check them with ``starfile``."""
    # lines end at "\n" only (bytes.splitlines would also cut at a lone "\r"); a "\r\n"
    # ending stays part of its line, and a last line without "\n" is kept as it is
    lines = io.BytesIO(source.read_bytes()).readlines()
    block = _particle_block(source, _parse_lines(source, lines))
    label = f"data_{block.name}"
    columns = len(block.columns)
    for index in block.rows:
        found = _count_fields(lines[index])
        if found != columns:
            raise InputError(
                source,
                f"{label}, line {index + 1}",
                f"{columns} values (one per column)",
                f"{found}",
                "A row may be split over two lines or joined with another",
            )

    table = _read_with_starfile(source).get(block.name)
    if not isinstance(table, pd.DataFrame):
        raise InputError(source, label, "a loop the starfile package reads as a table", "none")
    if list(table.columns) != block.columns:
        raise InputError(
            source,
            f"{label} columns",
            f"{list(table.columns)} (as read by starfile)",
            f"{block.columns}",
        )
    if len(table) != len(block.rows):
        raise InputError(
            source,
            f"{label} rows",
            f"{len(table)} rows (as read by starfile)",
            f"{len(block.rows)} data lines",
            "Look for a quoted value left open or a row split over lines",
        )
    if len(keep) != len(block.rows):
        raise InputError(
            source,
            "keep",
            f"{len(block.rows)} values (one per particle row)",
            f"{len(keep)}",
        )
    return _ParticleLoop(lines, np.asarray(block.rows, dtype=np.int64), block.name, block.columns)


def _write(source: Path, particles: _ParticleLoop, keep: np.ndarray, out: Path) -> int:
    """Write the lines of ``particles`` less the rows where ``keep`` is False to ``out``."""
    drop = np.zeros(len(particles.lines), dtype=bool)
    drop[particles.rows[~keep]] = True
    written = int(keep.sum())
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            handle.writelines(
                line for line, dropped in zip(particles.lines, drop, strict=True) if not dropped
            )
        if written == 0:
            _check_empty(source, particles, tmp, out)
    logger.info("wrote %d of %d particles of %s to %s", written, len(keep), source.name, out)
    return written


def _check_empty(source: Path, particles: _ParticleLoop, tmp: Path, out: Path) -> None:
    """Refuse an empty selection unless starfile reads it as an empty table, same columns."""
    try:
        table = _read_with_starfile(tmp).get(particles.block)
    except InputError:
        table = None
    if (
        not isinstance(table, pd.DataFrame)
        or len(table) != 0
        or list(table.columns) != particles.columns
    ):
        raise InputError(
            source,
            "selection",
            f"particles to write to {out}",
            "an empty selection, and its file would not read back as an empty table",
            "Widen the selection",
        )


def write_star_subset(source: str | Path, keep: np.ndarray, out: str | Path) -> int:
    """Write the particles of ``source`` where ``keep`` is True to ``out``, as text copied.

    Every block and line of ``source`` is copied unchanged (optics block, comments, blank
    lines, number formatting, line endings, row order) except the data rows of the
    particle loop whose ``keep`` is False. The particle loop is the ``data_particles``
    block (RELION 3.1+), or in a RELION 3.0 file the one block whose loop has an
    ``_rlnImageName`` column.

    Before writing, the file is cross-checked: every particle row must hold one value per
    column, and ``starfile.read`` must find the same columns and as many rows as this
    module's line parser. ``out`` is written atomically (it appears complete or not at
    all) and is never the source file.

    An empty selection (``keep`` all False) writes the block's loop header with no rows
    only when ``starfile`` reads that file back as an empty table with the same columns
    (``starfile`` gives such a table ``float64`` columns, whatever the column held);
    otherwise, e.g. when a comment line follows the header, it raises InputError naming
    the selection and writes nothing.

    Parameters
    ----------
    source
        RELION particle STAR file.
    keep
        `(N,)` boolean, one value per particle row of ``source`` in file order.
    out
        Output STAR file; must not be ``source``.

    Returns
    -------
    int
        The number of particle rows written.

    Raises
    ------
    InputError
        ``keep`` is not a boolean `(N,)` array, ``out`` is ``source``, the file has no
        particle loop, or the line parser and ``starfile`` disagree about it.
    """
    source_path, out_path = Path(source), Path(out)
    values = _check_keep(source_path, keep)
    _check_outputs(source_path, [out_path])
    particles = _load_particles(source_path, values)
    return _write(source_path, particles, values, out_path)


def write_star_split(
    source: str | Path,
    keep: np.ndarray,
    out_selected: str | Path,
    out_complement: str | Path,
    others: np.ndarray | None = None,
) -> tuple[int, int]:
    """Write the selected particles and the rest of ``source`` to two STAR files.

    Both files are copies of ``source``'s text as in :func:`write_star_subset`: the
    first keeps the rows where ``keep`` is True, the second the rows where ``others`` is
    True (by default every row where ``keep`` is False).
    The source is parsed and checked once; nothing is written unless both checks pass.
    An empty side follows :func:`write_star_subset`'s rule for empty selections; it is
    written first, so that when it is refused neither file is written.

    Parameters
    ----------
    source
        RELION particle STAR file.
    keep
        `(N,)` boolean, one value per particle row of ``source`` in file order.
    out_selected, out_complement
        Output STAR files for ``keep`` and ``others``; two different files, neither
        ``source``.
    others
        `(N,)` boolean, the rows of the complement (none of ``keep``'s); ``~keep`` when
        ``None``. Rows in neither are written to neither file.

    Returns
    -------
    tuple[int, int]
        Rows written to ``out_selected`` and to ``out_complement``.

    Raises
    ------
    InputError
        As :func:`write_star_subset`, and when the two outputs are one file.
    """
    source_path = Path(source)
    selected_path, complement_path = Path(out_selected), Path(out_complement)
    values = _check_keep(source_path, keep)
    _check_outputs(source_path, [selected_path, complement_path])
    rest = ~values if others is None else _check_keep(source_path, others)
    if (rest & values).any():
        raise ValueError("a particle cannot be both selected and in the complement")
    particles = _load_particles(source_path, values)
    if values.size and not rest.any():
        # an empty side is checked as it is written: write it first, so that a refused
        # empty side leaves no file behind
        complement = _write(source_path, particles, rest, complement_path)
        selected = _write(source_path, particles, values, selected_path)
    else:
        selected = _write(source_path, particles, values, selected_path)
        complement = _write(source_path, particles, rest, complement_path)
    return selected, complement
