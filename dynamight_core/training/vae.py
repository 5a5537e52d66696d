"""Training one half set's deformation VAE.

Each step encodes a batch, samples z, decodes the displacements of every Gaussian,
renders the deformed model with the CTF and scores it with the whitened Fourier loss,
plus ``kl_weight x KL`` and ``lambda x`` the deformation penalty. ``lambda`` is re-balanced
at the start of every epoch so that the penalty's gradient on the decoder is
``regularisation_factor`` times the data term's. The consensus Gaussians keep learning
(at the warm-up's rates), and every ``consensus_update_every`` epochs the consensus is
moved to the mean deformed positions of the least-deformed training particles, so it can
settle on one state. Training stops when the last epochs made a negligible share of the
validation loss's descent (``training/stopping.py``), when it has not improved for
``patience`` epochs, or after ``max_epochs``; it is scored with each validation particle's
latent refined against its own image (see ``refine_latents``), because the encoder alone
mostly learns its training images when data are few and noisy. Every epoch ends with a
checkpoint of everything that carries over to the next (model, optimizer, random-number
states, the neighbour graph with its rest lengths, the penalty weight, the validation
latents and the stopping counters), so a killed run resumes bit-identically on the CPU
(on a GPU from the same state, to floating-point reordering: ``training/epochs.py``). A
NaN or infinite loss or parameter stops training with ``TrainingDivergedError`` before
anything is saved. An epoch that runs out of memory is run again from the end of the last
one with half the batch (``training/oom.py``), logged.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from dynamight_core.config_schema import default_of
from dynamight_core.data.batches import BatchReader
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.models.deformation import DeformationModel
from dynamight_core.training.epochs import DivergenceGuard, ResumableLoop, order_seed
from dynamight_core.training.half_set_vae import HalfSetVae, Refinement
from dynamight_core.training.memory import TRAINING_SETTINGS
from dynamight_core.training.oom import batch_after, check_forced_out_of_memory
from dynamight_core.training.regularisation import NeighbourGraph, make_graph
from dynamight_core.training.stopping import StoppingRule, latent_change
from dynamight_core.training.vae_steps import (
    balanced_weight,
    batch_losses,
    encode,
    validation_loss,
)

logger = logging.getLogger(__name__)

IMPROVEMENT = 1e-6
GUARD = DivergenceGuard(
    "train-vae",
    "Lower the learning rates vae.lr, vae.lr_positions and vae.lr_shape (vae.refine_lr if "
    "only the validation loss diverged), e.g. tenfold, and run again",
)


@dataclass(frozen=True)
class VaeSettings:
    """Optimisation settings of the VAE (config section ``vae``).

    The architecture settings are :class:`~dynamight_core.models.deformation.VaeArchitecture`.
    """

    max_resolution_a: float | None = default_of("vae", "max_resolution_a")
    batch_size: int = default_of("vae", "batch_size")
    lr: float = default_of("vae", "lr")
    lr_positions: float = default_of("vae", "lr_positions")
    lr_shape: float = default_of("vae", "lr_shape")
    kl_weight: float = default_of("vae", "kl_weight")
    regularisation_factor: float = default_of("vae", "regularisation_factor")
    consensus_update_every: int = default_of("vae", "consensus_update_every")
    consensus_update_particles: int = default_of("vae", "consensus_update_particles")
    patience: int = default_of("vae", "patience")
    max_epochs: int = default_of("vae", "max_epochs")
    stop_share: float = default_of("vae", "stop_share")
    stop_window: int = default_of("vae", "stop_window")
    min_epochs: int = default_of("vae", "min_epochs")
    refine_steps: int = default_of("vae", "refine_steps")
    refine_lr: float = default_of("vae", "refine_lr")
    track_steps: int = default_of("vae", "track_steps")
    seed: int = default_of("vae", "seed")

    def stopping(self) -> StoppingRule:
        """The descent-share stopping rule (``training/stopping.py``)."""
        return StoppingRule(self.stop_window, self.stop_share, self.min_epochs)

    def refinement(self) -> Refinement:
        """Latent refinement settings (the prior weight is the KL weight)."""
        return Refinement(self.refine_steps, self.refine_lr, self.kl_weight, self.track_steps)


@dataclass
class TrainingState:
    """Everything that changes from epoch to epoch (and goes into the checkpoint).

    The checkpoint also holds the regulariser's graph, built at the start and after every
    consensus update from the positions of that moment: its rest lengths must survive a
    restart, and the positions have moved on since.
    """

    epoch: int = 0
    best: float = float("inf")
    since_best: int = 0
    weight: float = 0.0
    stopped: str = ""
    history: list[dict[str, float]] = field(default_factory=list)
    validation_latents: torch.Tensor | None = None


def make_optimizer(model: DeformationModel, settings: VaeSettings) -> torch.optim.Adam:
    """Adam over the encoder and decoder, the consensus positions and its shape parameters."""
    consensus = model.consensus
    return torch.optim.Adam(
        [
            {
                "params": list(model.encoder.parameters()) + list(model.decoder.parameters()),
                "lr": settings.lr,
            },
            {"params": [consensus.positions], "lr": settings.lr_positions},
            {
                "params": [consensus.log_masses, consensus.raw_widths, consensus.class_logits],
                "lr": settings.lr_shape,
            },
        ]
    )


@torch.no_grad()
def update_consensus(
    vae: HalfSetVae, reader: BatchReader, train: np.ndarray, settings: VaeSettings
) -> float:
    """Move the consensus to the mean deformed positions of the least-deformed particles.

    Returns the RMS shift of the Gaussians (Å).
    """
    model = vae.model
    scores, means = [], []
    for batch in reader.batches(train, settings.batch_size):
        mu, _ = encode(model, batch, vae.grid)
        scores.append(model.displacements_a(mu).norm(dim=-1).pow(2).mean(dim=1).sqrt())
        means.append(mu)
    order = torch.cat(scores).argsort()[: settings.consensus_update_particles]
    chosen = torch.cat(means)[order]
    new_positions = torch.cat(
        [model.deformed_positions_a(part) for part in chosen.split(settings.batch_size)]
    ).mean(dim=0)
    shift = float((new_positions - model.consensus.positions_a()).norm(dim=1).pow(2).mean().sqrt())
    model.consensus.positions.copy_(new_positions / model.consensus.box_a)
    return shift


def train_epoch(
    vae: HalfSetVae,
    optimizer: torch.optim.Optimizer,
    reader: BatchReader,
    train: np.ndarray,
    graph: NeighbourGraph,
    settings: VaeSettings,
    state: TrainingState,
) -> dict[str, float]:
    """One pass over ``train``; returns the mean data, KL and deformation terms."""
    totals = {"data": 0.0, "kl": 0.0, "deformation": 0.0}
    order = order_seed(settings.seed, state.epoch)
    what = f"train-vae epoch {state.epoch + 1}"
    # closing: the prefetcher stops however the epoch ends (an OOM re-runs it)
    with closing(reader.tracked(train, settings.batch_size, what, order)) as batches:
        for number, batch in enumerate(batches):
            check_forced_out_of_memory()
            terms = batch_losses(
                vae.model, batch, vae.grid, vae.likelihood, graph, settings.kl_weight
            )
            if number == 0:
                state.weight = balanced_weight(vae.model, terms, settings.regularisation_factor)
            loss = terms.data + terms.kl + state.weight * terms.deformation
            GUARD.loss(loss, f"epoch {state.epoch + 1}, step {number + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            size = len(batch.indices)
            totals["data"] += terms.data.item() * size
            totals["kl"] += terms.kl.item() * size
            totals["deformation"] += terms.deformation.item() * size
    return {key: value / len(train) for key, value in totals.items()}


def _values(state: TrainingState, graph: NeighbourGraph) -> dict[str, object]:
    """What the checkpoint keeps of the loop besides model, optimizer and RNG states."""
    return {
        "graph": graph.state(),
        "epoch": state.epoch,
        "best": state.best,
        "since_best": state.since_best,
        "weight": state.weight,
        "stopped": state.stopped,
        "history": state.history,
        "validation_latents": state.validation_latents,
    }


def _from_values(
    saved: dict[str, Any], device: torch.device
) -> tuple[TrainingState, NeighbourGraph]:
    """The state and graph of :func:`_values`."""
    state = TrainingState(
        int(saved["epoch"]),
        float(saved["best"]),
        int(saved["since_best"]),
        float(saved["weight"]),
        str(saved["stopped"]),
        list(saved["history"]),
        saved["validation_latents"],
    )
    return state, NeighbourGraph.from_state(saved["graph"], device)


def _resume(
    loop: ResumableLoop, device: torch.device
) -> tuple[TrainingState, NeighbourGraph | None]:
    """The saved state and graph (``TrainingState()`` and ``None`` when there is none)."""
    saved = loop.resume()
    if saved is None:
        return TrainingState(), None
    state, graph = _from_values(saved, device)
    logger.info("resuming from checkpoint: epoch %d", state.epoch + 1)
    return state, graph


def _epoch(
    vae: HalfSetVae,
    optimizer: torch.optim.Optimizer,
    reader: BatchReader,
    rows: tuple[np.ndarray, np.ndarray],
    graph: NeighbourGraph,
    settings: VaeSettings,
    state: TrainingState,
    bonds: torch.Tensor | None,
) -> NeighbourGraph:
    """One epoch: training pass, validation, consensus update, stopping rule, log line.

    ``rows`` are the (training, validation) rows. Returns the graph (rebuilt after a
    consensus update).
    """
    model = vae.model
    train, validation = rows
    losses = train_epoch(vae, optimizer, reader, train, graph, settings, state)
    state.epoch += 1
    before = state.validation_latents
    valid, state.validation_latents = validation_loss(
        vae, reader, validation, state.validation_latents
    )
    change = latent_change(before, state.validation_latents)
    GUARD.loss(valid, f"epoch {state.epoch}", "validation loss")
    moved = 0.0
    if settings.consensus_update_every and state.epoch % settings.consensus_update_every == 0:
        moved = update_consensus(vae, reader, train, settings)
        graph = make_graph(model.consensus.positions_a(), bonds)
    GUARD.parameters(model, f"the end of epoch {state.epoch}")
    if valid < state.best * (1.0 - IMPROVEMENT):
        state.best, state.since_best = valid, 0
    else:
        state.since_best += 1
    losses_so_far = [row["validation"] for row in state.history] + [valid]
    converged = settings.stopping().reason_to_stop(losses_so_far)
    if state.since_best >= settings.patience:
        state.stopped = f"no improvement of the validation loss for {settings.patience} epochs"
    elif converged:
        state.stopped = converged
    elif state.epoch >= settings.max_epochs:
        state.stopped = f"reached max_epochs ({settings.max_epochs})"
    state.history.append(
        {
            "epoch": state.epoch,
            **losses,
            "validation": valid,
            "deformation_weight": state.weight,
            "consensus_shift_a": moved,
            "latent_change": change,
        }
    )
    logger.info(
        "epoch %d: data %.6f, KL %.2e, deformation %.2e (weight %.3g), validation %.6f%s",
        state.epoch,
        losses["data"],
        losses["kl"],
        losses["deformation"],
        state.weight,
        valid,
        f", consensus moved {moved:.2f} Å" if moved else "",
    )
    return graph


def train_vae(
    vae: HalfSetVae,
    reader: BatchReader,
    train: np.ndarray,
    validation: np.ndarray,
    settings: VaeSettings,
    checkpointer: Checkpointer | None = None,
    bonds: torch.Tensor | None = None,
) -> TrainingState:
    """Train ``vae.model`` on ``train``; stop on ``validation`` (see the module docstring).

    ``bonds`` `(E, 2)`: regularise with this bond graph instead of the smoothness graph.
    Out of memory in an epoch: the batch (``settings.batch_size`` and ``vae.batch_size``)
    is halved and the epoch run again from the state at the end of the previous one.
    """
    model = vae.model
    device = model.consensus.positions.device
    optimizer = make_optimizer(model, settings)
    loop = ResumableLoop(checkpointer, "vae", model, optimizer)
    state, graph = _resume(loop, device)
    if graph is None:
        graph = make_graph(model.consensus.positions_a(), bonds)
    while not state.stopped:
        last = loop.capture(_values(state, graph))
        try:
            graph = _epoch(
                vae, optimizer, reader, (train, validation), graph, settings, state, bonds
            )
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            batch = batch_after(error, settings.batch_size, "vae.batch_size", TRAINING_SETTINGS)
            settings = replace(settings, batch_size=batch)
            vae.batch_size = batch
            state, graph = _from_values(loop.restore(last), device)
            continue
        loop.save(_values(state, graph))
    logger.info("stopped after %d epochs: %s", state.epoch, state.stopped)
    return state
