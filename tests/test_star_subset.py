"""Particle subsets of RELION STAR files written by copying the source text."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from dynamight_core.errors import InputError
from dynamight_core.io.star_subset import write_star_split, write_star_subset

PARTICLE_COLUMNS = (
    "rlnImageName",
    "rlnMicrographName",
    "rlnCoordinateX",
    "rlnAngleRot",
    "rlnDefocusU",
    "rlnOriginXAngst",
    "rlnOpticsGroup",
    "rlnRandomSubset",
    "rlnClassNumber",
)

OPTICS_TEXT = """
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographOriginalPixelSize #3
_rlnVoltage #4
_rlnSphericalAberration #5
_rlnAmplitudeContrast #6
_rlnImagePixelSize #7
_rlnImageSize #8
_rlnImageDimensionality #9
opticsGroup1            1     0.622000   300.000000     2.700000     0.100000     1.244000 \
          256            2
opticsGroup2            2     0.622000   300.000000     2.700000     0.100000     1.244000 \
          256            2
"""
OPTICS_TEXT += " \n"  # a line holding only a space, as some writers leave


def _particle_rows(count: int, seed: int = 0) -> list[list[str]]:
    """Fields of ``count`` particle rows as RELION writes them (text, not numbers)."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        movie = "a" if index % 3 else "b"
        rows.append(
            [
                f"{index + 1:06d}@Extract/job005/Movies/{movie}.mrcs",
                f"MotionCorr/job002/Movies/{movie}.mrc",
                f"{rng.uniform(0, 4000):.6f}",
                f"{rng.uniform(-180, 180):.6f}",
                f"{rng.uniform(5000, 30000):.6f}",
                f"{rng.normal(0, 3):.6f}",
                f"{index % 2 + 1}",
                f"{rng.integers(1, 3)}",
                f"{rng.integers(1, 4)}",
            ]
        )
    return rows


def _header(columns: tuple[str, ...]) -> str:
    return "loop_\n" + "".join(f"_{name} #{i + 1}\n" for i, name in enumerate(columns))


def _relion31_text(count: int = 40, seed: int = 0) -> str:
    rows = _particle_rows(count, seed)
    body = "".join("  ".join(row) + " \n" for row in rows)
    particles = f"\n# version 30001\n\ndata_particles\n\n{_header(PARTICLE_COLUMNS)}"
    return f"{OPTICS_TEXT}{particles}{body}\n"


def _legacy_text(count: int = 25) -> str:
    columns = (*PARTICLE_COLUMNS, "rlnVoltage", "rlnSphericalAberration", "rlnDetectorPixelSize")
    rows = [[*row, "300.000000", "2.700000", "1.244000"] for row in _particle_rows(count, 5)]
    body = "".join("\t".join(row) + "\n" for row in rows)
    return f"\ndata_\n\n{_header(columns)}{body}"


def _write(path: Path, text: str, newline: bytes = b"\n") -> Path:
    path.write_bytes(text.replace("\n", "\r\n").encode() if newline == b"\r\n" else text.encode())
    return path


def _lines(path: Path) -> list[bytes]:
    return io.BytesIO(path.read_bytes()).readlines()


def _is_subsequence(short: list[bytes], long: list[bytes]) -> bool:
    remaining = iter(long)
    return all(any(line == candidate for candidate in remaining) for line in short)


def _blocks(path: Path) -> dict:
    return starfile.read(path, always_dict=True)


def _assert_rows_equal(subset: pd.DataFrame, original: pd.DataFrame, keep: np.ndarray) -> None:
    """Same columns, dtypes and values as the kept rows of the original, in order."""
    expected = original[keep].reset_index(drop=True)
    assert list(subset.columns) == list(original.columns)
    assert subset.dtypes.to_dict() == original.dtypes.to_dict()
    pd.testing.assert_frame_equal(subset.reset_index(drop=True), expected)


def _expected_lines(source: Path, dropped_images: set[str]) -> list[bytes]:
    """The source's lines less those whose first field is a dropped image name."""
    return [
        line
        for line in _lines(source)
        if not (line.split() and line.split()[0].decode() in dropped_images)
    ]


@pytest.fixture
def relion31(tmp_path: Path) -> Path:
    return _write(tmp_path / "particles.star", _relion31_text())


def test_subset_relion31_keeps_columns_dtypes_values_and_optics(
    relion31: Path, tmp_path: Path
) -> None:
    original = _blocks(relion31)
    particles = original["particles"]
    keep = np.random.default_rng(1).random(len(particles)) < 0.4
    assert 0 < keep.sum() < len(keep)
    out = tmp_path / "out" / "selected.star"

    written = write_star_subset(relion31, keep, out)

    assert written == keep.sum()
    subset = _blocks(out)
    assert list(subset) == ["optics", "particles"]
    _assert_rows_equal(subset["particles"], particles, keep)
    pd.testing.assert_frame_equal(subset["optics"], original["optics"])
    # the original column kinds survive: strings, integers, floats
    assert subset["particles"]["rlnOpticsGroup"].dtype == np.int64
    assert subset["particles"]["rlnRandomSubset"].dtype == np.int64
    assert subset["particles"]["rlnDefocusU"].dtype == np.float64
    assert (subset["particles"]["rlnOriginXAngst"] < 0).any()
    # verbatim copy: exactly the source's lines less the dropped particles' rows
    dropped = set(particles["rlnImageName"][~keep])
    out_lines = _lines(out)
    assert _is_subsequence(out_lines, _lines(relion31))
    assert out_lines == _expected_lines(relion31, dropped)
    assert b"# version 30001\n" in out_lines
    assert len(_lines(relion31)) - len(out_lines) == (~keep).sum()


def test_subset_preserves_row_order_and_float_text(relion31: Path, tmp_path: Path) -> None:
    keep = np.zeros(40, dtype=bool)
    keep[[3, 17, 18, 39]] = True
    out = tmp_path / "four.star"
    assert write_star_subset(relion31, keep, out) == 4
    names = _blocks(out)["particles"]["rlnImageName"].tolist()
    assert names == [
        f"{i + 1:06d}@Extract/job005/Movies/{'a' if i % 3 else 'b'}.mrcs" for i in (3, 17, 18, 39)
    ]
    # the float text is RELION's, not re-formatted: every field appears as in the source
    rows = _particle_rows(40)
    for index, line in zip((3, 17, 18, 39), _lines(out)[-5:-1], strict=True):
        assert line.decode().split() == rows[index]


def test_split_selected_and_complement_partition_the_particles(
    relion31: Path, tmp_path: Path
) -> None:
    original = _blocks(relion31)
    particles = original["particles"]
    keep = (particles["rlnClassNumber"] == 2).to_numpy()
    assert 0 < keep.sum() < len(keep)
    selected_path, complement_path = tmp_path / "sel.star", tmp_path / "rest.star"

    counts = write_star_split(relion31, keep, selected_path, complement_path)

    assert counts == (keep.sum(), (~keep).sum())
    selected = _blocks(selected_path)
    complement = _blocks(complement_path)
    _assert_rows_equal(selected["particles"], particles, keep)
    _assert_rows_equal(complement["particles"], particles, ~keep)
    chosen = set(selected["particles"]["rlnImageName"])
    rest = set(complement["particles"]["rlnImageName"])
    assert chosen.isdisjoint(rest)
    assert chosen | rest == set(particles["rlnImageName"])
    assert len(selected["particles"]) + len(complement["particles"]) == len(particles)
    for blocks in (selected, complement):
        pd.testing.assert_frame_equal(blocks["optics"], original["optics"])
    assert (complement["particles"]["rlnClassNumber"] != 2).all()
    assert _is_subsequence(_lines(selected_path), _lines(relion31))
    assert _is_subsequence(_lines(complement_path), _lines(relion31))


def test_legacy_relion30_single_block(tmp_path: Path) -> None:
    source = _write(tmp_path / "legacy.star", _legacy_text())
    original = _blocks(source)
    assert list(original) == [""]
    particles = original[""]
    keep = np.arange(len(particles)) % 4 == 1
    out = tmp_path / "legacy_subset.star"

    assert write_star_subset(source, keep, out) == keep.sum()

    subset = _blocks(out)
    assert list(subset) == [""]
    _assert_rows_equal(subset[""], particles, keep)
    assert _lines(out) == _expected_lines(source, set(particles["rlnImageName"][~keep]))


def test_tabs_crlf_trailing_spaces_and_no_final_newline(tmp_path: Path) -> None:
    rows = _particle_rows(6, seed=3)
    separators = ["\t", "   ", " \t ", "\t\t", "  ", " "]
    body = "".join(
        sep.join(row) + ("  \t" if i % 2 else "") + "\n"
        for i, (sep, row) in enumerate(zip(separators, rows, strict=True))
    )
    text = "# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnImageSize #2\n"
    text += f"1 256\n2  256 \n\ndata_particles\n\n{_header(PARTICLE_COLUMNS)}{body}"
    text = text.rstrip("\n")  # the last row ends without a newline
    source = _write(tmp_path / "crlf.star", text, newline=b"\r\n")
    raw = source.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") and not raw.endswith(b"\n")
    original = _blocks(source)
    particles = original["particles"]
    assert len(particles) == 6

    for keep in (
        np.array([True, False, True, False, False, True]),  # keeps the unterminated row
        np.array([False, True, True, False, True, False]),  # drops it
    ):
        out = tmp_path / f"crlf_{int(keep[-1])}.star"
        assert write_star_subset(source, keep, out) == keep.sum()
        out_raw = out.read_bytes()
        # line endings untouched: every line break is still CRLF
        assert out_raw.count(b"\r\n") == out_raw.count(b"\n")
        assert out_raw.endswith(b"\n") != bool(keep[-1])
        assert _lines(out) == _expected_lines(source, set(particles["rlnImageName"][~keep]))
        subset = _blocks(out)
        _assert_rows_equal(subset["particles"], particles, keep)
        pd.testing.assert_frame_equal(subset["optics"], original["optics"])


def test_extra_general_block_before_optics(tmp_path: Path) -> None:
    general = "\ndata_general\n\n_rlnReferenceDimensionality 3\n_rlnNrClasses 4\n\n"
    source = _write(tmp_path / "general.star", general + _relion31_text(12, seed=7))
    original = _blocks(source)
    assert list(original) == ["general", "optics", "particles"]
    keep = np.arange(12) >= 6

    assert write_star_subset(source, keep, tmp_path / "g.star") == 6

    subset = _blocks(tmp_path / "g.star")
    assert (
        subset["general"]
        == original["general"]
        == {
            "rlnReferenceDimensionality": 3,
            "rlnNrClasses": 4,
        }
    )
    pd.testing.assert_frame_equal(subset["optics"], original["optics"])
    _assert_rows_equal(subset["particles"], original["particles"], keep)


def test_refuses_to_overwrite_the_source(relion31: Path, tmp_path: Path) -> None:
    before = relion31.read_bytes()
    keep = np.arange(40) < 10
    other_spelling = tmp_path / "sub" / ".." / relion31.name
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.star"
    link.symlink_to(relion31)
    hard = tmp_path / "hard.star"
    hard.hardlink_to(relion31)
    for out in (relion31, str(relion31), other_spelling, link, hard):
        with pytest.raises(InputError, match="input"):
            write_star_subset(relion31, keep, out)
        with pytest.raises(InputError, match="input"):
            write_star_split(relion31, keep, tmp_path / "fine.star", out)
    assert relion31.read_bytes() == before
    assert not (tmp_path / "fine.star").exists()


def test_split_refuses_one_file_for_both_sides(relion31: Path, tmp_path: Path) -> None:
    out = tmp_path / "both.star"
    with pytest.raises(InputError, match="both"):
        write_star_split(relion31, np.arange(40) < 5, out, tmp_path / "." / "both.star")
    assert not out.exists()


@pytest.mark.parametrize(
    "keep",
    [
        np.ones(39, dtype=bool),
        np.ones(41, dtype=bool),
        np.ones(40, dtype=np.int64),
        np.ones((40, 1), dtype=bool),
    ],
)
def test_refuses_bad_keep(relion31: Path, tmp_path: Path, keep: np.ndarray) -> None:
    out = tmp_path / "never.star"
    with pytest.raises(InputError) as error:
        write_star_subset(relion31, keep, out)
    message = str(error.value)
    assert str(relion31) in message and "keep" in message
    if keep.dtype == np.bool_ and keep.ndim == 1:
        assert "40 values" in message and f"found {len(keep)}" in message
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [relion31]


def test_row_split_over_two_lines_is_refused(tmp_path: Path) -> None:
    text = _relion31_text(10)
    lines = text.split("\n")
    row = next(i for i, line in enumerate(lines) if line.startswith("000004@"))
    fields = lines[row].split()
    lines[row : row + 1] = ["  ".join(fields[:4]), "  ".join(fields[4:])]
    source = _write(tmp_path / "split.star", "\n".join(lines))
    with pytest.raises(InputError) as error:
        write_star_subset(source, np.ones(10, dtype=bool), tmp_path / "out.star")
    message = str(error.value)
    assert "data_particles" in message and "9 values" in message and "found 4" in message
    assert not (tmp_path / "out.star").exists()


def test_starfile_row_count_disagreement_is_refused(tmp_path: Path) -> None:
    # a quote opened on one row and closed on the next: every line still has 9 values,
    # but starfile (pandas) reads the two lines as one row
    lines = _relion31_text(10).split("\n")
    for prefix, edit in (("000005@", lambda v: '"' + v), ("000006@", lambda v: v + '"')):
        row = next(i for i, line in enumerate(lines) if line.startswith(prefix))
        fields = lines[row].split()
        fields[-1] = edit(fields[-1])
        lines[row] = "  ".join(fields)
    source = _write(tmp_path / "quote.star", "\n".join(lines))
    assert len(_blocks(source)["particles"]) == 9  # starfile sees one row less
    with pytest.raises(InputError) as error:
        write_star_subset(source, np.ones(10, dtype=bool), tmp_path / "out.star")
    message = str(error.value)
    assert "data_particles rows" in message and "9 rows" in message and "10 data lines" in message
    assert not (tmp_path / "out.star").exists()


def test_file_without_particles_is_refused(tmp_path: Path) -> None:
    source = _write(tmp_path / "optics_only.star", OPTICS_TEXT)
    with pytest.raises(InputError, match="data_particles"):
        write_star_subset(source, np.ones(2, dtype=bool), tmp_path / "out.star")


def test_empty_selection_writes_header_only(relion31: Path, tmp_path: Path) -> None:
    original = _blocks(relion31)
    out = tmp_path / "none.star"
    assert write_star_subset(relion31, np.zeros(40, dtype=bool), out) == 0
    subset = _blocks(out)
    assert len(subset["particles"]) == 0
    assert list(subset["particles"].columns) == list(PARTICLE_COLUMNS)
    pd.testing.assert_frame_equal(subset["optics"], original["optics"])
    assert _lines(out) == _expected_lines(relion31, set(original["particles"]["rlnImageName"]))
    # an all-True split has an empty complement
    counts = write_star_split(relion31, np.ones(40, dtype=bool), out, tmp_path / "rest.star")
    assert counts == (40, 0)
    assert _lines(out) == _lines(relion31)
    assert len(_blocks(tmp_path / "rest.star")["particles"]) == 0


def test_empty_selection_refused_when_it_would_not_read_back(tmp_path: Path) -> None:
    # a comment after the rows: with no rows left, starfile cannot read the loop
    source = _write(tmp_path / "commented.star", _relion31_text(8) + "# end of particles\n")
    keep = np.zeros(8, dtype=bool)
    with pytest.raises(InputError, match="selection"):
        write_star_subset(source, keep, tmp_path / "none.star")
    with pytest.raises(InputError, match="selection"):
        write_star_split(source, keep, tmp_path / "none.star", tmp_path / "all.star")
    # nothing written, no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["commented.star"]
    # a non-empty selection of the same file is fine and keeps the comment
    keep[2] = True
    assert write_star_subset(source, keep, tmp_path / "one.star") == 1
    assert _lines(tmp_path / "one.star")[-1] == b"# end of particles\n"
