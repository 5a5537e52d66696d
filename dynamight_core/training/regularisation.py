"""Smoothness prior on the deformations: a neighbour graph over the Gaussians.

As in the paper, pairs of Gaussians closer than 1.5 times the mean distance to the two
nearest neighbours are connected, and the loss penalises changes of their distances. Two
further terms keep the Gaussians physically plausible: one for coming closer than half the
mean neighbour distance, one for moving further than the graph radius from their nearest
neighbours. All three are normalised by the squared mean neighbour distance, so they are
dimensionless. An optional bond graph from an atomic model replaces the smoothness graph
(the paper warns that it can bias the result towards the model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dynamight_core.errors import InputError
from dynamight_core.io.atomic_model import read_atomic_model
from dynamight_core.models.gaussians import GaussianModel

logger = logging.getLogger(__name__)

RADIUS_FACTOR = 1.5
NEAREST = 2
MIN_COVERED = 0.25  # fewer Gaussians near the atomic model: it is probably not docked


@dataclass
class NeighbourGraph:
    """Edges between Gaussians and their rest lengths.

    Attributes
    ----------
    edges
        `(E, 2)` index pairs of the smoothness (or bond) graph.
    rest_lengths_a
        `(E,)` consensus distances of the edges (Å).
    nearest
        `(M, 2)` pairs of each Gaussian with its nearest neighbours.
    nearest_rest_a
        `(M,)` consensus distances of those pairs (Å).
    mean_distance_a
        Mean distance of a Gaussian to its two nearest neighbours (Å).
    radius_a
        Graph radius (Å).
    """

    edges: torch.Tensor
    rest_lengths_a: torch.Tensor
    nearest: torch.Tensor
    nearest_rest_a: torch.Tensor
    mean_distance_a: float
    radius_a: float

    def state(self) -> dict[str, torch.Tensor | float]:
        """The graph as tensors and floats, for a checkpoint (see :meth:`from_state`).

        A resumed training must use the graph it was using, whose rest lengths come from
        the positions at the last consensus update, not from the current positions.
        """
        return {
            "edges": self.edges,
            "rest_lengths_a": self.rest_lengths_a,
            "nearest": self.nearest,
            "nearest_rest_a": self.nearest_rest_a,
            "mean_distance_a": self.mean_distance_a,
            "radius_a": self.radius_a,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, torch.Tensor | float], device: torch.device
    ) -> NeighbourGraph:
        """The graph saved by :meth:`state`, with its tensors on ``device``."""
        return cls(
            torch.as_tensor(state["edges"]).to(device),
            torch.as_tensor(state["rest_lengths_a"]).to(device),
            torch.as_tensor(state["nearest"]).to(device),
            torch.as_tensor(state["nearest_rest_a"]).to(device),
            float(state["mean_distance_a"]),
            float(state["radius_a"]),
        )


def _nearest_neighbours(
    positions_a: torch.Tensor, count: int, chunk: int = 2048
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, count)` distances and indices of each point's nearest other points."""
    distances, indices = [], []
    for start in range(0, positions_a.shape[0], chunk):
        block = torch.cdist(positions_a[start : start + chunk], positions_a)
        rows = torch.arange(block.shape[0], device=block.device)
        block[rows, rows + start] = float("inf")
        values, where = block.topk(count, dim=1, largest=False)
        distances.append(values)
        indices.append(where)
    return torch.cat(distances), torch.cat(indices)


def _pairs_within(positions_a: torch.Tensor, distance_a: float, chunk: int = 2048) -> torch.Tensor:
    """`(E, 2)` index pairs ``i < j`` of `(N, 3)` points closer than ``distance_a``."""
    pairs = []
    for start in range(0, positions_a.shape[0], chunk):
        block = torch.cdist(positions_a[start : start + chunk], positions_a)
        rows, cols = torch.nonzero(block < distance_a, as_tuple=True)
        rows = rows + start
        keep = rows < cols
        pairs.append(torch.stack([rows[keep], cols[keep]], dim=1))
    return torch.cat(pairs)


def neighbour_graph(positions_a: torch.Tensor, chunk: int = 2048) -> NeighbourGraph:
    """The smoothness graph of `(N, 3)` consensus positions (Å)."""
    positions = positions_a.detach()
    near_distance, near_index = _nearest_neighbours(positions, NEAREST, chunk)
    mean_distance = float(near_distance.mean())
    radius = RADIUS_FACTOR * mean_distance
    edge_index = _pairs_within(positions, radius, chunk)
    rest = (positions[edge_index[:, 0]] - positions[edge_index[:, 1]]).norm(dim=1)
    count = positions.shape[0]
    nearest = torch.stack(
        [
            torch.arange(count, device=positions.device).repeat_interleave(NEAREST),
            near_index.flatten(),
        ],
        dim=1,
    )
    return NeighbourGraph(edge_index, rest, nearest, near_distance.flatten(), mean_distance, radius)


def bond_graph(positions_a: torch.Tensor, bonds: torch.Tensor) -> NeighbourGraph:
    """A graph of given bonds `(E, 2)` (e.g. from an atomic model) instead of neighbours.

    Rest lengths are the bonds' lengths at the `(N, 3)` positions (Å); the term keeping
    Gaussians near their nearest neighbours only counts neighbours that are bonded.
    """
    positions = positions_a.detach()
    graph = neighbour_graph(positions)
    bonds = bonds.to(positions.device)
    rest = (positions[bonds[:, 0]] - positions[bonds[:, 1]]).norm(dim=1)
    count = positions.shape[0]

    def keys(pairs: torch.Tensor) -> torch.Tensor:
        return pairs.min(dim=1).values * count + pairs.max(dim=1).values

    bonded = torch.isin(keys(graph.nearest), keys(bonds))
    return NeighbourGraph(
        bonds,
        rest,
        graph.nearest[bonded],
        graph.nearest_rest_a[bonded],
        graph.mean_distance_a,
        graph.radius_a,
    )


def make_graph(positions_a: torch.Tensor, bonds: torch.Tensor | None) -> NeighbourGraph:
    """The bond graph when ``bonds`` are given, the smoothness graph otherwise."""
    return neighbour_graph(positions_a) if bonds is None else bond_graph(positions_a, bonds)


def _residue_keys(chains: np.ndarray, residue_numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per atom: an integer chain id and the residue number."""
    _, chain_ids = np.unique(chains, return_inverse=True)
    return chain_ids.astype(np.int64), residue_numbers.astype(np.int64)


def bonds_from_atomic_model(
    positions_a: torch.Tensor,
    atoms_a: np.ndarray,
    chains: np.ndarray,
    residue_numbers: np.ndarray,
    source: str = "atomic model",
) -> torch.Tensor:
    """Edges between Gaussians whose residues are covalently linked in an atomic model.

    Each Gaussian takes the residue of its nearest atom, if that atom is within the
    smoothness graph's radius. Two Gaussians are bonded when their residues are the same
    or consecutive in one chain and they are within twice that radius. Gaussians the model
    does not cover keep their smoothness-graph edges, so unmodelled density still moves
    smoothly. Neighbours that are close in space but not linked in sequence (across a
    domain interface, between chains) are not connected, so they may slide past each other.

    Parameters
    ----------
    positions_a
        `(N, 3)` consensus positions (Å, box-centred).
    atoms_a
        `(A, 3)` atom positions in the same frame (Å).
    chains, residue_numbers
        `(A,)` chain name and residue number of each atom.
    source
        Name of the model file, for errors.

    Returns
    -------
    torch.Tensor
        `(E, 2)` index pairs (int64, on the positions' device).
    """
    positions = positions_a.detach()
    graph = neighbour_graph(positions)
    atoms = torch.as_tensor(atoms_a, dtype=positions.dtype, device=positions.device)
    found = [torch.cdist(part, atoms).min(dim=1) for part in positions.split(2048)]
    nearest_distance = torch.cat([part.values for part in found])
    nearest_atom = torch.cat([part.indices for part in found])
    covered = (nearest_distance <= graph.radius_a).cpu().numpy()
    if covered.mean() < MIN_COVERED:
        raise InputError(
            source,
            "coordinates",
            f"atoms within {graph.radius_a:.1f} Å of at least {MIN_COVERED:.0%} of the Gaussians "
            "(a model docked in the consensus map, coordinates in Å from the map's corner)",
            f"{covered.mean():.0%} of the Gaussians covered",
        )
    chain_ids, numbers = _residue_keys(chains, residue_numbers)
    atom = nearest_atom.cpu().numpy()
    chain, number = chain_ids[atom], numbers[atom]
    first, second = _pairs_within(positions, 2 * graph.radius_a).cpu().numpy().T
    linked = (
        covered[first]
        & covered[second]
        & (chain[first] == chain[second])
        & (np.abs(number[first] - number[second]) <= 1)
    )
    pairs = np.stack([first[linked], second[linked]], axis=1)
    edges = graph.edges.cpu().numpy()
    uncovered = edges[~(covered[edges[:, 0]] & covered[edges[:, 1]])]
    bonds = np.unique(np.concatenate([pairs, uncovered]), axis=0)
    logger.info(
        "bond graph from %s: %d of %d Gaussians covered, %d bonds (smoothness graph: %d edges)",
        source,
        int(covered.sum()),
        len(covered),
        len(bonds),
        len(edges),
    )
    return torch.as_tensor(bonds, dtype=torch.int64, device=positions.device)


def bonds_from_file(path: str | Path, consensus: GaussianModel) -> torch.Tensor:
    """`(E, 2)` bond graph from the atomic model ``path`` (map frame: Å from the corner).

    Warns that the model biases the motions: the paper's control experiments show that
    regularising with a model's bonds pulls motions (and the map) towards it, even a
    wrong one.
    """
    atoms = read_atomic_model(path)
    logger.warning(
        "regularising with bonds from the atomic model %s: the paper's control experiments "
        "show that this biases the motions (and the map) towards the model, even a wrong one; "
        "compare with a run without it",
        path,
    )
    pixel_a = consensus.box_a / consensus.box_px
    centred_a = atoms.positions_a - (consensus.box_px // 2) * pixel_a
    return bonds_from_atomic_model(
        consensus.positions_a(), centred_a, atoms.chains, atoms.residue_numbers, str(path)
    )


def deformation_penalty(deformed_a: torch.Tensor, graph: NeighbourGraph) -> torch.Tensor:
    """Mean penalty per particle of `(B, N, 3)` deformed positions (dimensionless).

    Sum of: squared change of edge lengths; squared approach closer than half the mean
    neighbour distance on edges; squared excess of nearest-neighbour distances over the
    graph radius. Pairs already closer (or further) in the consensus are held to their
    consensus distance instead, so the consensus and any rigid motion of it cost nothing.
    Each term is averaged over edges and particles and divided by the squared mean
    neighbour distance.
    """
    scale = graph.mean_distance_a**2
    # Gaussian-major copy: each gather (and its backward, an index_add) then moves one
    # contiguous row of B x 3 values per index instead of three scattered values
    by_gaussian = deformed_a.transpose(0, 1).contiguous()

    def separation(pairs: torch.Tensor) -> torch.Tensor:
        first = by_gaussian.index_select(0, pairs[:, 0])
        difference = first - by_gaussian.index_select(0, pairs[:, 1])
        return difference.square().sum(dim=-1).clamp(min=1e-12).sqrt()

    lengths = separation(graph.edges)
    rest = graph.rest_lengths_a[:, None]
    stretch = ((lengths - rest) ** 2).mean()
    closest = torch.clamp(rest, max=0.5 * graph.mean_distance_a)
    clash = (torch.relu(closest - lengths) ** 2).mean()
    near = separation(graph.nearest)
    farthest = torch.clamp(graph.nearest_rest_a[:, None], min=graph.radius_a)
    apart = (torch.relu(near - farthest) ** 2).mean()
    return (stretch + clash + apart) / scale
