"""Atomic models (PDB / mmCIF) read with gemmi, as weighted points for rendering."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from dynamight_core.errors import InputError


@dataclass(frozen=True)
class AtomicModel:
    """Heavy atoms of the first model of a structure.

    Attributes
    ----------
    positions_a
        `(N, 3)` coordinates (x, y, z) in Å, as in the file.
    atomic_numbers
        `(N,)` atomic numbers (used as scattering weights).
    chains
        `(N,)` chain names.
    residue_numbers
        `(N,)` residue sequence numbers.
    path
        Source file.
    """

    positions_a: np.ndarray
    atomic_numbers: np.ndarray
    chains: np.ndarray
    residue_numbers: np.ndarray
    path: Path

    def select(self, selection: str) -> np.ndarray:
        """Boolean `(N,)` mask of the atoms in ``selection``.

        Parameters
        ----------
        selection
            Comma-separated chains and residue ranges, e.g. ``"B"`` or ``"A:120-250,C"``.
        """
        chosen = np.zeros(len(self.positions_a), dtype=bool)
        for part in (p.strip() for p in selection.split(",") if p.strip()):
            chain, _, residues = part.partition(":")
            in_chain = self.chains == chain
            if residues:
                first, _, last = residues.partition("-")
                try:
                    low, high = int(first), int(last or first)
                except ValueError as err:
                    raise InputError(
                        self.path, "selection", "CHAIN or CHAIN:FIRST-LAST", repr(part)
                    ) from err
                in_chain &= (self.residue_numbers >= low) & (self.residue_numbers <= high)
            if not in_chain.any():
                raise InputError(
                    self.path, "selection", "atoms matching the selection", f"none for {part!r}"
                )
            chosen |= in_chain
        return chosen


def read_atomic_model(path: str | Path) -> AtomicModel:
    """Read the heavy atoms (no hydrogens, no waters) of the first model of a PDB/mmCIF file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file", "an existing PDB or mmCIF file", "no such file")
    try:
        structure = gemmi.read_structure(str(path))
    except (RuntimeError, ValueError) as err:
        raise InputError(path, "syntax", "a readable PDB or mmCIF file", str(err)) from err
    structure.remove_hydrogens()
    structure.remove_waters()
    rows: list[tuple[float, float, float, int, str, int | None]] = []
    if len(structure) > 0:
        for chain in structure[0]:
            for residue in chain:
                for atom in residue:
                    pos = atom.pos
                    rows.append(
                        (
                            pos.x,
                            pos.y,
                            pos.z,
                            atom.element.atomic_number,
                            chain.name,
                            residue.seqid.num,
                        )
                    )
    if not rows:
        raise InputError(path, "atoms", "at least one heavy atom", "none")
    return AtomicModel(
        positions_a=np.array([r[:3] for r in rows], dtype=np.float64),
        atomic_numbers=np.array([r[3] for r in rows], dtype=np.float64),
        chains=np.array([r[4] for r in rows]),
        residue_numbers=np.array([r[5] for r in rows], dtype=np.int64),
        path=path,
    )
