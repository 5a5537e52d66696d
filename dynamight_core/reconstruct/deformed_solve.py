"""Iterative solve of a deformed half map: conjugate gradients with the deformation inside.

Minimise ``J(f) = sum_i ||A_i f - y_i||^2 + f^T Lambda f`` over the map on its support, with
``A_i`` the deformed projector of particle ``i`` (:mod:`.deformed_projector`): the normal
equations ``(N + Lambda) f = b`` are solved by preconditioned conjugate gradients, started
from the filtered backprojection and preconditioned by the same filter
(:mod:`.deformed_filter`). Each iteration is one pass over the half's particles (projection
and backprojection; no image is read). cryoSPARC 3D Flex and MoDART reconstruct this way;
the paper's filter alone ignores how the deformation changes ``N``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.progress import track
from dynamight_core.reconstruct.deformed import DeformedGeometry, DeformedSums, batch_rows
from dynamight_core.reconstruct.deformed_filter import FilteredHalf

logger = logging.getLogger(__name__)


def normal_pass(
    geometry: DeformedGeometry, rows: np.ndarray, values: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """``N f = sum_i A_i^T A_i f`` over particles ``rows`` (no images read)."""
    projector = geometry.projector
    total = torch.zeros_like(values)
    batches = batch_rows(np.sort(rows), batch_size)
    what = "projecting and backprojecting"
    for batch in track(batches, len(rows), what, size=len, logger=logger):
        ctf, rotations = geometry.reader.geometry(batch)
        coords = geometry.coords(batch, rotations)
        total += projector.adjoint(projector.forward(values, coords, ctf), coords, ctf)
    return total


@dataclass
class SolveState:
    """Preconditioned conjugate-gradient state (all `(V,)` on the support)."""

    iteration: int
    values: torch.Tensor
    residual: torch.Tensor
    preconditioned: torch.Tensor
    direction: torch.Tensor
    history: list[dict[str, float]]
    snapshots: list[torch.Tensor]

    def as_dict(self) -> dict[str, object]:
        """Tensors and numbers for a checkpoint."""
        return {
            "iteration": self.iteration,
            "values": self.values.cpu(),
            "residual": self.residual.cpu(),
            "preconditioned": self.preconditioned.cpu(),
            "direction": self.direction.cpu(),
            "history": [dict(row) for row in self.history],
            "snapshots": torch.stack(self.snapshots).cpu(),
        }


def _objective(state: SolveState, rhs: torch.Tensor, data_norm: float) -> float:
    """``J(f) = ||y||^2 - b.f - r.f`` (with ``r = b - (N + Lambda) f``)."""
    value = data_norm - float(rhs @ state.values) - float(state.residual @ state.values)
    return value


def refine(
    start: FilteredHalf,
    sums: DeformedSums,
    apply_normal: Callable[[torch.Tensor], torch.Tensor],
    iterations: int,
    checkpointer: Checkpointer | None = None,
) -> Iterator[SolveState]:
    """Preconditioned conjugate gradients on ``(N + Lambda) f = b`` from the filtered map.

    Yields the state after each iteration (iteration 0: the start), with the objective
    ``J`` and the relative residual in ``history``. With a checkpointer the state is saved
    after every iteration and a restart continues from the last one.

    Parameters
    ----------
    start
        The filtered backprojection and the half's filter (the preconditioner).
    sums
        The half's backprojection (``b``) and data norm.
    apply_normal
        ``f -> N f`` (one pass over the half's particles).
    iterations
        Number of conjugate-gradient iterations.
    checkpointer
        Resumes and saves the solve.
    """
    rhs = sums.numerators.sum(0)
    operator = start.filter
    saved = checkpointer.load("solve") if checkpointer else None
    if saved is not None:
        state = SolveState(
            int(saved["iteration"]),
            saved["values"].to(rhs),
            saved["residual"].to(rhs),
            saved["preconditioned"].to(rhs),
            saved["direction"].to(rhs),
            [dict(row) for row in saved["history"]],
            list(saved["snapshots"].to(rhs)),
        )
        logger.info("resuming the iterative solve after iteration %d", state.iteration)
    elif iterations == 0:  # the filtered backprojection alone: no pass over the particles
        nothing = torch.full_like(start.values, math.nan)
        state = SolveState(0, start.values, nothing, nothing, nothing, [], [start.values])
        state.history.append(
            {"iteration": 0.0, "objective": math.nan, "relative_residual": math.nan}
        )
    else:
        values = start.values
        residual = rhs - apply_normal(values) - operator.regularise(values)
        preconditioned = operator.precondition(residual)
        state = SolveState(0, values, residual, preconditioned, preconditioned.clone(), [], [])
        _record(state, rhs, sums.data_norm)
        if checkpointer:
            checkpointer.save("solve", state.as_dict())
    yield state
    while state.iteration < iterations:
        direction = state.direction
        product = apply_normal(direction) + operator.regularise(direction)
        rz = float(state.residual @ state.preconditioned)
        curvature = float(direction @ product)
        if not math.isfinite(curvature) or curvature <= 0:
            logger.warning("conjugate gradients stopped: curvature %g", curvature)
            break
        step = rz / curvature
        values = state.values + step * direction
        residual = state.residual - step * product
        preconditioned = operator.precondition(residual)
        beta = float(residual @ preconditioned) / rz
        state = SolveState(
            state.iteration + 1,
            values,
            residual,
            preconditioned,
            preconditioned + beta * direction,
            state.history,
            state.snapshots,
        )
        _record(state, rhs, sums.data_norm)
        if checkpointer:
            checkpointer.save("solve", state.as_dict())
        yield state


def _record(state: SolveState, rhs: torch.Tensor, data_norm: float) -> None:
    row = {
        "iteration": float(state.iteration),
        "objective": _objective(state, rhs, data_norm),
        "relative_residual": float(state.residual.norm() / rhs.norm().clamp(min=1e-30)),
    }
    state.history.append(row)
    state.snapshots.append(state.values.clone())
    logger.info(
        "iteration %d: objective %.6g, relative residual %.4g",
        state.iteration,
        row["objective"],
        row["relative_residual"],
    )
