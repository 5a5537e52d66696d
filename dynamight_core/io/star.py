"""RELION particle STAR files: reading, validation and the per-particle metadata.

RELION 3.1+ files have an ``optics`` block joined to the ``particles`` block through
``rlnOpticsGroup`` (pixel size, voltage, Cs, amplitude contrast, image size). Legacy 3.0
files have a single block with the optics columns on every particle. Every problem is
reported as an :class:`~dynamight_core.errors.InputError` naming the file and the column,
before any image is read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from dynamight_core.errors import InputError
from dynamight_core.io.files import atomic_path
from dynamight_core.io.star_checks import (
    check_ranges,
    check_unique_images,
    warn_ignored_refinements,
)
from dynamight_core.io.star_stacks import find_stack, stack_candidates

logger = logging.getLogger(__name__)

ANGLE_COLUMNS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
CTF_COLUMNS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle")
OPTICS_COLUMNS = ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")


@dataclass
class ParticleSet:
    """Per-particle metadata of a STAR file, in physical units.

    Attributes
    ----------
    star_path
        The STAR file.
    particles
        The particle table as read (one row per particle, original order).
    image_files
        Resolved stack files; ``file_index`` points into this list.
    file_index, slice_index
        `(N,)` stack file and 0-based image position of every particle.
    euler_deg
        `(N, 3)` (rot, tilt, psi) in degrees.
    origin_a
        `(N, 2)` (rlnOriginXAngst, rlnOriginYAngst) in Å.
    defocus_u_a, defocus_v_a, defocus_angle_deg
        `(N,)` CTF defocus (Å) and astigmatism angle (degrees).
    voltage_kv, cs_mm, amplitude_contrast
        `(N,)` optics of each particle's group.
    phase_shift_deg, bfactor_a2, ctf_scale
        `(N,)` optional CTF terms (0, 0 and 1 when absent).
    random_subset
        `(N,)` rlnRandomSubset (1 or 2), or ``None`` when the column is absent.
    pixel_size_a
        Pixel size in Å (the same for all optics groups).
    box_px
        Image size in pixels (the same for all optics groups).
    """

    star_path: Path
    particles: pd.DataFrame
    optics: pd.DataFrame | None
    image_files: list[Path]
    file_index: np.ndarray
    slice_index: np.ndarray
    euler_deg: np.ndarray
    origin_a: np.ndarray
    defocus_u_a: np.ndarray
    defocus_v_a: np.ndarray
    defocus_angle_deg: np.ndarray
    voltage_kv: np.ndarray
    cs_mm: np.ndarray
    amplitude_contrast: np.ndarray
    phase_shift_deg: np.ndarray
    bfactor_a2: np.ndarray
    ctf_scale: np.ndarray
    random_subset: np.ndarray | None
    pixel_size_a: float
    box_px: int

    def __len__(self) -> int:
        return len(self.particles)

    def image_names(self) -> list[str]:
        """The ``rlnImageName`` entries, for keying per-particle outputs."""
        return self.particles["rlnImageName"].astype(str).tolist()


def _read_blocks(path: Path) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Return (particles, optics-or-None) from a RELION 3.1 or 3.0 STAR file."""
    if not path.is_file():
        raise InputError(path, "file", "an existing STAR file", "no such file")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as err:  # starfile raises assorted parser errors
        raise InputError(path, "syntax", "a readable STAR file", f"a parse error ({err})") from err
    tables = {name: df for name, df in blocks.items() if isinstance(df, pd.DataFrame)}
    if "particles" in tables:
        return tables["particles"], tables.get("optics")
    with_images = [df for df in tables.values() if "rlnImageName" in df.columns]
    if len(with_images) == 1:
        return with_images[0], None
    raise InputError(
        path,
        "data_particles",
        "a particles table with an rlnImageName column",
        f"blocks {sorted(tables)}",
    )


def particle_image_names(star_path: str | Path) -> np.ndarray:
    """`(N,)` ``rlnImageName`` of every particle row of a STAR file, in file order.

    The particle table as :func:`read_particles` finds it; no image is looked for.
    """
    particles, _ = _read_blocks(Path(star_path))
    if "rlnImageName" not in particles.columns:
        raise InputError(star_path, "rlnImageName (data_particles)", "a column", "none")
    return np.asarray(particles["rlnImageName"].astype(str))


def _require(df: pd.DataFrame, columns: tuple[str, ...], path: Path, block: str) -> None:
    for column in columns:
        if column not in df.columns:
            raise InputError(path, f"{column} (data_{block})", "a column", "none")
        values = pd.to_numeric(df[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                path,
                f"{column} (data_{block}) row {row + 1}",
                "a finite number",
                repr(df[column].iloc[row]),
            )


def _optics_per_particle(
    particles: pd.DataFrame, optics: pd.DataFrame | None, path: Path
) -> pd.DataFrame:
    """Optics columns for every particle (joined from the optics block when present)."""
    if optics is None:
        _require(particles, OPTICS_COLUMNS, path, "particles")
        table = particles[list(OPTICS_COLUMNS)].copy()
        if "rlnImagePixelSize" in particles.columns:
            table["rlnImagePixelSize"] = particles["rlnImagePixelSize"]
        elif {"rlnDetectorPixelSize", "rlnMagnification"} <= set(particles.columns):
            _require(particles, ("rlnDetectorPixelSize", "rlnMagnification"), path, "particles")
            table["rlnImagePixelSize"] = (
                particles["rlnDetectorPixelSize"] * 1e4 / particles["rlnMagnification"]
            )
        else:
            raise InputError(
                path,
                "rlnImagePixelSize (data_particles)",
                "a pixel size (or rlnDetectorPixelSize and rlnMagnification)",
                "none",
            )
        _require(table, ("rlnImagePixelSize",), path, "particles")
        check_ranges(table, path, "particles")
        return table
    _require(
        optics,
        ("rlnOpticsGroup", "rlnImagePixelSize", "rlnImageSize", *OPTICS_COLUMNS),
        path,
        "optics",
    )
    check_ranges(optics, path, "optics")
    _require(particles, ("rlnOpticsGroup",), path, "particles")
    known = set(optics["rlnOpticsGroup"].astype(int))
    groups = particles["rlnOpticsGroup"].astype(int)
    unknown = sorted(set(groups) - known)
    if unknown:
        raise InputError(
            path,
            "rlnOpticsGroup (data_particles)",
            f"a group listed in data_optics {sorted(known)}",
            f"group {unknown[0]}",
        )
    indexed = optics.set_index(optics["rlnOpticsGroup"].astype(int))
    columns = ["rlnImagePixelSize", "rlnImageSize", *OPTICS_COLUMNS]
    return indexed.loc[groups.to_numpy(), columns].reset_index(drop=True)


SAME_VALUE_RTOL = 1e-4


def _single_value(values: pd.Series, column: str, path: Path) -> float:
    """The value every optics group shares, within a relative ``SAME_VALUE_RTOL``."""
    unique = np.unique(values.to_numpy(dtype=np.float64))
    if not np.allclose(unique, unique[0], rtol=SAME_VALUE_RTOL, atol=0.0):
        raise InputError(
            path,
            f"{column} (data_optics)",
            "the same value in every optics group",
            f"{unique.tolist()}",
            "Rescale the particles to one pixel and box size.",
        )
    return float(unique[0])


def _origins_a(particles: pd.DataFrame, pixel_size_a: float, path: Path) -> np.ndarray:
    if {"rlnOriginXAngst", "rlnOriginYAngst"} <= set(particles.columns):
        _require(particles, ("rlnOriginXAngst", "rlnOriginYAngst"), path, "particles")
        return particles[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(dtype=np.float64)
    if {"rlnOriginX", "rlnOriginY"} <= set(particles.columns):
        _require(particles, ("rlnOriginX", "rlnOriginY"), path, "particles")
        return particles[["rlnOriginX", "rlnOriginY"]].to_numpy(dtype=np.float64) * pixel_size_a
    raise InputError(
        path,
        "rlnOriginXAngst/rlnOriginYAngst (data_particles)",
        "particle origins in Å (or rlnOriginX/Y in pixels)",
        "none",
    )


def _parse_image_names(particles: pd.DataFrame, path: Path) -> tuple[np.ndarray, list[str]]:
    """0-based image positions and stack names from ``rlnImageName`` entries."""
    if "rlnImageName" not in particles.columns:
        raise InputError(path, "rlnImageName (data_particles)", "a column", "none")
    positions = np.empty(len(particles), dtype=np.int64)
    names: list[str] = []
    for row, entry in enumerate(particles["rlnImageName"].astype(str)):
        number, sep, name = entry.partition("@")
        if not sep:
            number, name = "1", entry
        if not number.strip().isdigit() or int(number) < 1 or not name:
            raise InputError(
                path, f"rlnImageName row {row + 1}", "'N@stack.mrcs' with N >= 1", repr(entry)
            )
        positions[row] = int(number) - 1
        names.append(name)
    return positions, names


def _resolve_stacks(
    names: list[str], path: Path, project_root: Path | None
) -> tuple[list[Path], np.ndarray]:
    """Resolve stack names against the STAR file's folder, the project root and the cwd."""
    unique = list(dict.fromkeys(names))
    resolved: list[Path] = []
    for name in unique:
        found = find_stack(name, path, project_root)
        if found is None:
            looked = ", ".join(str(c) for c in stack_candidates(name, path, project_root))
            raise InputError(
                path,
                "rlnImageName",
                f"an existing stack '{name}'",
                f"no file (looked in: {looked})",
                "Pass the RELION project directory as the project root.",
            )
        resolved.append(found.resolve())
    lookup = {name: i for i, name in enumerate(unique)}
    return resolved, np.array([lookup[n] for n in names], dtype=np.int64)


def _optional(particles: pd.DataFrame, column: str, default: float, path: Path) -> np.ndarray:
    if column not in particles.columns:
        return np.full(len(particles), default, dtype=np.float64)
    _require(particles, (column,), path, "particles")
    return particles[column].to_numpy(dtype=np.float64)


def _random_subset(particles: pd.DataFrame, path: Path) -> np.ndarray | None:
    if "rlnRandomSubset" not in particles.columns:
        return None
    subset = pd.to_numeric(particles["rlnRandomSubset"], errors="coerce").to_numpy()
    bad = ~np.isin(subset, [1, 2])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            path,
            f"rlnRandomSubset row {row + 1}",
            "1 or 2",
            repr(particles["rlnRandomSubset"].iloc[row]),
        )
    return subset.astype(np.int64)


def read_particles(star_path: str | Path, project_root: str | Path | None = None) -> ParticleSet:
    """Read and validate a RELION particle STAR file (3.1+ with optics, or legacy 3.0).

    Parameters
    ----------
    star_path
        The ``particles.star`` / ``run_data.star`` file.
    project_root
        Optional RELION project directory against which ``rlnImageName`` paths resolve.

    Returns
    -------
    ParticleSet
        Metadata in physical units; images are not read.
    """
    path = Path(star_path)
    if project_root is not None and not Path(project_root).is_dir():
        raise InputError(
            project_root,
            "project root",
            "an existing RELION project folder",
            "no such folder",
        )
    particles, optics = _read_blocks(path)
    if len(particles) == 0:
        raise InputError(path, "data_particles", "at least one particle", "an empty table")
    particles = particles.reset_index(drop=True)
    _require(particles, ANGLE_COLUMNS + CTF_COLUMNS, path, "particles")
    check_ranges(particles, path, "particles")
    warn_ignored_refinements({"optics": optics, "particles": particles}, path)
    optics_rows = _optics_per_particle(particles, optics, path)
    pixel_size_a = _single_value(optics_rows["rlnImagePixelSize"], "rlnImagePixelSize", path)
    box_px = (
        int(_single_value(optics_rows["rlnImageSize"], "rlnImageSize", path))
        if "rlnImageSize" in optics_rows.columns
        else 0
    )
    slice_index, names = _parse_image_names(particles, path)
    image_files, file_index = _resolve_stacks(
        names, path, Path(project_root) if project_root else None
    )
    check_unique_images(particles, file_index, slice_index, path)
    return ParticleSet(
        star_path=path,
        particles=particles,
        optics=optics,
        image_files=image_files,
        file_index=file_index,
        slice_index=slice_index,
        euler_deg=particles[list(ANGLE_COLUMNS)].to_numpy(dtype=np.float64),
        origin_a=_origins_a(particles, pixel_size_a, path),
        defocus_u_a=particles["rlnDefocusU"].to_numpy(dtype=np.float64),
        defocus_v_a=particles["rlnDefocusV"].to_numpy(dtype=np.float64),
        defocus_angle_deg=particles["rlnDefocusAngle"].to_numpy(dtype=np.float64),
        voltage_kv=optics_rows["rlnVoltage"].to_numpy(dtype=np.float64),
        cs_mm=optics_rows["rlnSphericalAberration"].to_numpy(dtype=np.float64),
        amplitude_contrast=optics_rows["rlnAmplitudeContrast"].to_numpy(dtype=np.float64),
        phase_shift_deg=_optional(particles, "rlnPhaseShift", 0.0, path),
        bfactor_a2=_optional(particles, "rlnCtfBFactor", 0.0, path),
        ctf_scale=_optional(particles, "rlnCtfScalefactor", 1.0, path),
        random_subset=_random_subset(particles, path),
        pixel_size_a=pixel_size_a,
        box_px=box_px,
    )


def write_star(path: str | Path, particles: pd.DataFrame, optics: pd.DataFrame | None) -> None:
    """Write a RELION 3.1 STAR file (optics + particles) atomically."""
    blocks = (
        {"optics": optics, "particles": particles}
        if optics is not None
        else {"particles": particles}
    )
    with atomic_path(path) as tmp:
        starfile.write(blocks, tmp, overwrite=True)
