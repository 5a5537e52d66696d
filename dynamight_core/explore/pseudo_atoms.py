"""The Gaussian model as pseudo-atoms (PDB and mmCIF, written with gemmi).

One pseudo-atom per Gaussian, one model (coordinate set) per state: ChimeraX opens the file
as a trajectory (``open file coordsets true``, then ``coordset``), Coot and PyMOL as
models. The B-factor column carries a per-Gaussian number in Å (its displacement over the
particles, or the disagreement between the half sets' motions), so that ``color bfactor``
shows where the model moves, or where its motion can be trusted. Coordinates are in the
frame of our MRC maps (origin 0), so the pseudo-atoms overlay the maps.
"""

from __future__ import annotations

import logging
import string
from pathlib import Path

import gemmi
import numpy as np

from dynamight_core.io.files import atomic_path

logger = logging.getLogger(__name__)

RESIDUE_NAME = "GSN"  # a Gaussian; HETATM, so no program mistakes it for an amino acid
ATOM_NAME = "G"
ELEMENT = "C"
RESIDUES_PER_CHAIN = 9999  # PDB residue numbers have four digits
CHAIN_NAMES = string.ascii_uppercase + string.ascii_lowercase + string.digits
PDB_MAX_ATOMS = 99_999  # PDB serial numbers have five digits; larger models: mmCIF only


def pseudo_atom_structure(
    states_a: np.ndarray, bfactors_a: np.ndarray, cell_a: float, name: str
) -> gemmi.Structure:
    """A structure of `(M, N, 3)` pseudo-atom positions (Å, map frame), M models of N atoms.

    Gaussian ``j`` is residue ``j % 9999 + 1`` of chain ``CHAIN_NAMES[j // 9999]``;
    ``bfactors_a`` `(N,)` goes to each atom's B-factor, ``cell_a`` is the map's box edge.
    """
    states = np.asarray(states_a, dtype=np.float64)
    count = states.shape[1]
    if len(bfactors_a) != count:
        raise ValueError(f"{len(bfactors_a)} B-factors for {count} pseudo-atoms")
    if count > RESIDUES_PER_CHAIN * len(CHAIN_NAMES):
        raise ValueError(f"{count} pseudo-atoms exceed what chains and residues can number")
    structure = gemmi.Structure()
    structure.name = name
    structure.cell = gemmi.UnitCell(cell_a, cell_a, cell_a, 90.0, 90.0, 90.0)
    structure.spacegroup_hm = "P 1"
    bfactors = np.clip(np.asarray(bfactors_a, dtype=np.float64), 0.0, 999.99)
    for number, positions in enumerate(states, start=1):
        model = gemmi.Model(number)
        for start in range(0, count, RESIDUES_PER_CHAIN):
            chain = gemmi.Chain(CHAIN_NAMES[start // RESIDUES_PER_CHAIN])
            for index in range(start, min(start + RESIDUES_PER_CHAIN, count)):
                chain.add_residue(_residue(index - start + 1, positions[index], bfactors[index]))
            model.add_chain(chain)
        structure.add_model(model)
    structure.setup_entities()
    return structure


def _residue(number: int, position: np.ndarray, bfactor: float) -> gemmi.Residue:
    atom = gemmi.Atom()
    atom.name = ATOM_NAME
    atom.element = gemmi.Element(ELEMENT)
    atom.pos = gemmi.Position(*(float(v) for v in position))
    atom.occ = 1.0
    atom.b_iso = float(bfactor)
    residue = gemmi.Residue()
    residue.name = RESIDUE_NAME
    residue.seqid = gemmi.SeqId(number, " ")
    residue.het_flag = "H"
    residue.add_atom(atom)
    return residue


def write_pseudo_atoms(
    structure: gemmi.Structure, cif_path: str | Path, pdb_path: str | Path | None = None
) -> None:
    """Write mmCIF (always) and PDB (when given and the model has <= 99,999 atoms)."""
    with atomic_path(cif_path) as tmp:
        structure.make_mmcif_document().write_file(str(tmp))
    if pdb_path is None:
        return
    atoms = structure[0].count_atom_sites() if len(structure) else 0
    if atoms > PDB_MAX_ATOMS:
        raise ValueError(
            f"{atoms} pseudo-atoms do not fit the PDB format ({PDB_MAX_ATOMS} at most); "
            f"use the mmCIF file {cif_path}"
        )
    with atomic_path(pdb_path) as tmp:
        structure.write_minimal_pdb(str(tmp))


def read_pseudo_atoms(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """`(M, N, 3)` positions and `(N,)` B-factors of a file written here (gemmi)."""
    structure = gemmi.read_structure(str(path))
    states = []
    bfactors: list[float] = []
    for number, model in enumerate(structure):
        positions = [
            (atom.pos.x, atom.pos.y, atom.pos.z)
            for chain in model
            for residue in chain
            for atom in residue
        ]
        states.append(positions)
        if number == 0:
            bfactors = [atom.b_iso for chain in model for residue in chain for atom in residue]
    return np.asarray(states, dtype=np.float64), np.asarray(bfactors, dtype=np.float64)


def values_at_nearest(
    points_a: np.ndarray, table_points_a: np.ndarray, table_values: np.ndarray
) -> np.ndarray:
    """`(N,)` the value of the table point nearest each of `(N, 3)` points.

    Carries a per-Gaussian number of one model (e.g. the half sets' disagreement, tabulated
    on half set 1's pseudo-atoms) onto another model's pseudo-atoms: both fill the same map.
    """
    from scipy.spatial import cKDTree

    _, nearest = cKDTree(np.asarray(table_points_a, dtype=np.float64)).query(points_a)
    return np.asarray(table_values, dtype=np.float64)[nearest]
