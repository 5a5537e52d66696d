"""Plausibility of the values in a particle STAR file, checked before any image is read.

Integer columns (optics group, class, half set, image size) must hold whole numbers, optics
and CTF values must be physically possible (a zero pixel size or voltage, an
amplitude contrast above 1 or a negative defocus gave all-NaN or confidently wrong maps),
each image may be listed only once, and refined optics that the image model leaves out are
named in a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dynamight_core.errors import InputError

logger = logging.getLogger(__name__)

# physically possible values (RELION units): column -> (low, high, closed at low?,
# closed at high?, what is expected)
VALUE_RANGES: dict[str, tuple[float, float, bool, bool, str]] = {
    "rlnImagePixelSize": (0.0, 100.0, False, True, "a pixel size in (0, 100] Å"),
    "rlnVoltage": (0.0, 3000.0, False, True, "an acceleration voltage in (0, 3000] kV"),
    "rlnSphericalAberration": (-20.0, 20.0, True, True, "a spherical aberration in [-20, 20] mm"),
    "rlnAmplitudeContrast": (0.0, 1.0, True, False, "an amplitude contrast in [0, 1)"),
    "rlnDefocusU": (0.0, 1e6, False, True, "an underfocus in (0, 1e6] Å (RELION: positive)"),
    "rlnDefocusV": (0.0, 1e6, False, True, "an underfocus in (0, 1e6] Å (RELION: positive)"),
    "rlnCtfScalefactor": (0.0, 1e3, False, True, "a CTF scale factor in (0, 1000]"),
}
# columns RELION reads as integers (labels, indices, sizes): a fractional value such as
# rlnOpticsGroup 1.7 is an error here (RELION would truncate it without a word)
INTEGER_COLUMNS = (
    "rlnOpticsGroup",
    "rlnImageSize",
    "rlnImageDimensionality",
    "rlnClassNumber",
    "rlnGroupNumber",
    "rlnRandomSubset",
    "rlnHelicalTubeID",
)
# refinements of the optics RELION can estimate that this program does not model, and the
# value each takes when it is off
IGNORED_REFINEMENTS: dict[str, float | None] = {
    "rlnBeamTiltX": 0.0,
    "rlnBeamTiltY": 0.0,
    "rlnMagMat00": 1.0,
    "rlnMagMat01": 0.0,
    "rlnMagMat10": 0.0,
    "rlnMagMat11": 1.0,
    "rlnOddZernike": None,
    "rlnEvenZernike": None,
    "rlnSymmetricalAberrations": None,
    "rlnAntisymmetricalAberrations": None,
}


def check_range(values: pd.Series, column: str, path: Path, block: str) -> None:
    """Fail on the first value of ``column`` outside :data:`VALUE_RANGES`."""
    low, high, closed_low, closed_high, meaning = VALUE_RANGES[column]
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    too_low = numbers < low if closed_low else numbers <= low
    too_high = numbers > high if closed_high else numbers >= high
    bad = too_low | too_high
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            path,
            f"{column} (data_{block}) row {row + 1}",
            meaning,
            repr(values.iloc[row]),
        )


def check_integers(values: pd.Series, column: str, path: Path, block: str) -> None:
    """Fail on the first value of ``column`` that is not a whole number (``1.0`` is one)."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            path,
            f"{column} (data_{block}) row {row + 1}",
            "a whole number (RELION reads this column as an integer)",
            repr(values.iloc[row]),
        )


def check_ranges(table: pd.DataFrame, path: Path, block: str) -> None:
    """Type- and range-check the columns of ``table`` that have a type or range.

    :data:`INTEGER_COLUMNS` must hold whole numbers, :data:`VALUE_RANGES` physically
    possible values.
    """
    for column in INTEGER_COLUMNS:
        if column in table.columns:
            check_integers(table[column], column, path, block)
    for column in VALUE_RANGES:
        if column in table.columns:
            check_range(table[column], column, path, block)


def warn_ignored_refinements(tables: dict[str, pd.DataFrame | None], path: Path) -> None:
    """Warn about CTF refinements in the STAR file that the image model leaves out."""
    used: list[str] = []
    for block, table in tables.items():
        if table is None:
            continue
        for column, neutral in IGNORED_REFINEMENTS.items():
            if column not in table.columns:
                continue
            if neutral is not None:
                values = pd.to_numeric(table[column], errors="coerce").to_numpy(np.float64)
                if np.allclose(values, neutral, atol=1e-6):
                    continue
            used.append(f"{column} (data_{block})")
    if used:
        logger.warning(
            "%s: ignoring refined optics that this program does not model: %s. Images are "
            "modelled without them, which limits the attainable resolution; RELION's "
            "CTF refinement results are otherwise used as they are",
            path,
            ", ".join(used),
        )


def check_unique_images(
    particles: pd.DataFrame, file_index: np.ndarray, slice_index: np.ndarray, path: Path
) -> None:
    """Fail when two rows name the same image (they would count twice, maybe in both halves)."""
    keys = file_index * (int(slice_index.max()) + 1) + slice_index
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    if (counts == 1).all():
        return
    names = particles["rlnImageName"].astype(str).to_numpy()
    repeated = np.flatnonzero(np.isin(keys, keys[first[counts > 1]]))
    examples = ", ".join(f"row {row + 1} ({names[row]})" for row in repeated[:6])
    raise InputError(
        path,
        "rlnImageName (data_particles)",
        "every particle image once",
        f"{len(repeated) - int((counts > 1).sum())} repeated image(s): {examples}"
        + (", ..." if repeated.size > 6 else ""),
        "Remove the duplicates (e.g. RELION's Subset selection with 'Remove duplicates?'); "
        "a repeated image can land in both half sets and inflate the FSC.",
    )
