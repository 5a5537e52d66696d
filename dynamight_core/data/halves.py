"""Half-set assignment: RELION's ``rlnRandomSubset`` when present, else a seeded split.

The assignment is written to a CSV keyed by ``rlnImageName`` so every later stage uses
exactly the same two independent halves.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dynamight_core.errors import InputError
from dynamight_core.io.files import atomic_path
from dynamight_core.io.star import ParticleSet

logger = logging.getLogger(__name__)


def assign_halves(particle_set: ParticleSet, seed: int) -> np.ndarray:
    """`(N,)` half set (1 or 2) of every particle.

    ``rlnRandomSubset`` is used when the STAR file has it; otherwise the particles are
    split in two equal random halves with ``seed``.
    """
    if particle_set.random_subset is not None:
        halves = particle_set.random_subset.copy()
        source = "rlnRandomSubset"
    else:
        rng = np.random.default_rng(seed)
        halves = np.resize(np.array([1, 2]), len(particle_set))
        rng.shuffle(halves)
        source = f"a random split (seed {seed})"
        logger.warning(
            "%s has no rlnRandomSubset column: splitting the particles at random (seed %d). "
            "If their poses were refined with all particles together (not in RELION's two "
            "independent halves, as Refine3D does), the half sets are not independent and "
            "every FSC and resolution reported here is inflated. Use the run_data.star of a "
            "3D auto-refine job",
            particle_set.star_path,
            seed,
        )
    for half in (1, 2):
        if not (halves == half).any():
            raise InputError(
                particle_set.star_path,
                "rlnRandomSubset",
                "particles in both half sets",
                f"no particle in half {half}",
            )
    logger.info(
        "half sets from %s: %d and %d particles", source, (halves == 1).sum(), (halves == 2).sum()
    )
    return halves


def assign_validation(halves: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """`(N,)` flags of the particles each half set holds out for validation.

    Each half holds out ``fraction`` of its own particles (at least one), drawn with
    ``seed`` independently of the other half.
    """
    validation = np.zeros(len(halves), dtype=bool)
    for half in (1, 2):
        members = np.flatnonzero(halves == half)
        count = max(1, round(fraction * len(members))) if fraction > 0 else 0
        chosen = np.random.default_rng([seed, half]).choice(members, size=count, replace=False)
        validation[chosen] = True
    return validation


def check_half_set_sizes(
    source: str | Path,
    halves: np.ndarray,
    validation: np.ndarray,
    min_per_half: int,
    stop: bool,
) -> list[str]:
    """Warn (or, with ``stop``, fail) when a half set is too small to trust its results.

    Too small: fewer than ``min_per_half`` particles in a half set, or fewer than a tenth of
    that left to train on after the validation particles. Returns the warnings given.

    Raises
    ------
    InputError
        With ``stop``, at the first half set that is too small.
    """
    warnings = []
    for half in (1, 2):
        members = halves == half
        total, training = int(members.sum()), int((members & ~validation).sum())
        if total >= min_per_half and training >= max(min_per_half // 10, 1):
            continue
        found = f"{total} particles, {training} of them to train on"
        if stop:
            raise InputError(
                source,
                f"half set {half}",
                f"at least {min_per_half} particles (split.min_particles_per_half)",
                found,
                "Use more particles, or lower split.validation_fraction",
            )
        message = (
            f"{source}: half set {half} has {found}: fewer than split.min_particles_per_half "
            f"({min_per_half}); its latent space, motions and FSC are dominated by noise"
        )
        logger.warning("%s", message)
        warnings.append(message)
    return warnings


def write_halves(
    path: str | Path,
    particle_set: ParticleSet,
    halves: np.ndarray,
    validation: np.ndarray | None = None,
) -> None:
    """Write the assignment as CSV (``row``, ``rlnImageName``, ``half``, ``validation``)."""
    flags = np.zeros(len(halves), dtype=bool) if validation is None else validation
    table = pd.DataFrame(
        {
            "row": np.arange(len(halves)),
            "rlnImageName": particle_set.image_names(),
            "half": halves,
            "validation": flags.astype(int),
        }
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def read_halves(path: str | Path, particle_set: ParticleSet) -> np.ndarray:
    """Read an assignment written by :func:`write_halves` and check it fits ``particle_set``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "a half-set assignment CSV", "no such file")
    table = pd.read_csv(path)
    for column in ("rlnImageName", "half"):
        if column not in table.columns:
            raise InputError(path, column, "a column", "none")
    names = particle_set.image_names()
    if len(table) != len(names) or table["rlnImageName"].astype(str).tolist() != names:
        raise InputError(
            path,
            "rlnImageName",
            f"the {len(names)} particles of {particle_set.star_path} in the same order",
            f"{len(table)} rows that differ",
            "Re-run the half-set split for this STAR file.",
        )
    halves = table["half"].to_numpy()
    if not np.isin(halves, [1, 2]).all():
        raise InputError(path, "half", "1 or 2", f"{sorted(set(halves.tolist()))}")
    return halves


def read_split(
    path: str | Path, particle_set: ParticleSet, half: int
) -> tuple[np.ndarray, np.ndarray]:
    """STAR rows of one half set's training and validation particles.

    Raises
    ------
    InputError
        If the half set is empty or has no training particles.
    """
    halves = read_halves(path, particle_set)
    table = pd.read_csv(path)
    validation = (
        table["validation"].to_numpy() == 1
        if "validation" in table.columns
        else np.zeros(len(halves), dtype=bool)
    )
    members = halves == half
    train = np.flatnonzero(members & ~validation)
    held_out = np.flatnonzero(members & validation)
    if train.size == 0:
        raise InputError(
            path,
            "half",
            f"training particles in half set {half}",
            f"{members.sum()} particles, {held_out.size} of them held out",
        )
    return train, held_out
