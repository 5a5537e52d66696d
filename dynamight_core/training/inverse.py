"""Fitting the inverse deformation of a trained half set (the paper's inverse network).

Training pairs come from the half set's own forward decoder, no images: for a latent ``z``
of a training particle and points ``x`` (the consensus Gaussians, jittered by
``jitter_a`` so that the inverse is learnt between them too), the decoder gives the deformed
points ``y = x + d(z, x)``; the network must return ``x`` from ``(z, y)``:

    loss = mean ||y + r(z, y) - x||^2 + smoothness_weight * mean ||r(z, y + e) - r(z, y)||^2,

with ``e`` a random step of 1 px, which penalises the residual's change across a voxel (the
paper's smoothness term; the original trains without one). Errors are reported in Å on the
half set's held-out (validation) particles, at the Gaussian centres.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.config_schema import default_of
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.models.decoders import Decoder, decoder_kind
from dynamight_core.models.deformation import DeformationModel
from dynamight_core.models.inverse import build_inverse
from dynamight_core.progress import track
from dynamight_core.training.epochs import DivergenceGuard, ResumableLoop, order_seed

logger = logging.getLogger(__name__)

GUARD = DivergenceGuard("fit-inverse", "Lower inverse.lr tenfold and run again")


@dataclass(frozen=True)
class InverseSettings:
    """Settings of the inverse fit (config section ``inverse``)."""

    epochs: int = default_of("inverse", "epochs")
    batch_size: int = default_of("inverse", "batch_size")
    points: int = default_of("inverse", "points")
    jitter_a: float = default_of("inverse", "jitter_a")
    smoothness_weight: float = default_of("inverse", "smoothness_weight")
    layers: int = default_of("inverse", "layers")
    width: int = default_of("inverse", "width")
    lr: float = default_of("inverse", "lr")
    seed: int = default_of("inverse", "seed")


def _points(
    model: DeformationModel, count: int, jitter_a: float, generator: torch.Generator
) -> torch.Tensor:
    """`(count, 3)` training points (box units): random Gaussians, jittered."""
    consensus = model.consensus.positions.detach()
    device = consensus.device
    chosen = torch.randint(consensus.shape[0], (count,), generator=generator, device="cpu")
    noise = torch.randn(count, 3, generator=generator) * (jitter_a / model.consensus.box_a)
    return consensus[chosen.to(device)] + noise.to(device)


def inverse_loss(
    model: DeformationModel,
    net: Decoder,
    latents: torch.Tensor,
    points: torch.Tensor,
    smoothness_weight: float,
    step_px: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inversion and smoothness terms (box units squared) for `(B, L)` latents.

    Parameters
    ----------
    points
        `(P, 3)` consensus points (box units).
    step_px
        `(B, P, 3)` random steps for the smoothness term, px.
    """
    with torch.no_grad():
        deformed = points[None] + model.decoder(latents, points)  # (B, P, 3)
    residual = net(latents, deformed)
    inversion = ((deformed + residual - points[None]) ** 2).sum(-1).mean()
    if smoothness_weight <= 0:
        return inversion, torch.zeros_like(inversion)
    moved = net(latents, deformed + step_px / model.consensus.box_px)
    smoothness = ((moved - residual) ** 2).sum(-1).mean()
    return inversion, smoothness


def fit_inverse(
    model: DeformationModel,
    train_latents: torch.Tensor,
    settings: InverseSettings,
    checkpointer: Checkpointer | None = None,
) -> tuple[Decoder, list[dict[str, float]]]:
    """Train the inverse network of ``model`` on `(N, L)` training latents.

    Returns the network and one history row per epoch (mean losses in Å²). With a
    checkpointer, the state is saved after every epoch and a restart resumes bit for bit
    on the CPU (on a GPU from the same state, to floating-point reordering).
    """
    device = train_latents.device
    torch.manual_seed(settings.seed)
    net = build_inverse(
        train_latents.shape[1],
        model.consensus.box_px,
        int(model.decoder.frequencies.shape[0]),
        settings.width,
        settings.layers,
        decoder_kind(model.decoder),
    ).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.lr)
    loop = ResumableLoop(checkpointer, "inverse", net, optimizer)
    saved = loop.resume()
    history: list[dict[str, float]] = list(saved["history"]) if saved else []
    box_a2 = model.consensus.box_a**2
    for epoch in range(len(history), settings.epochs):
        generator = torch.Generator().manual_seed(order_seed(settings.seed, epoch))
        order = torch.randperm(len(train_latents), generator=generator)
        batches = list(order.split(settings.batch_size))
        totals = np.zeros(2)
        what = f"inverse epoch {epoch + 1}/{settings.epochs}"
        for batch in track(batches, len(order), what, size=len, logger=logger):
            points = _points(model, settings.points, settings.jitter_a, generator)
            step = torch.randn(len(batch), settings.points, 3, generator=generator).to(device)
            inversion, smoothness = inverse_loss(
                model,
                net,
                train_latents[batch.to(device)],
                points,
                settings.smoothness_weight,
                step,
            )
            loss = inversion + settings.smoothness_weight * smoothness
            GUARD.loss(loss, f"epoch {epoch + 1}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            totals += [float(inversion) * len(batch), float(smoothness) * len(batch)]
        GUARD.parameters(net, f"epoch {epoch + 1}")
        row = {
            "epoch": float(epoch + 1),
            "inversion_a2": float(totals[0]) / len(train_latents) * box_a2,
            "smoothness_a2": float(totals[1]) / len(train_latents) * box_a2,
        }
        history.append(row)
        logger.info(
            "inverse epoch %d/%d: inversion %.4f Å², smoothness %.4f Å²",
            epoch + 1,
            settings.epochs,
            row["inversion_a2"],
            row["smoothness_a2"],
        )
        loop.save({"history": history})
    return net, history


def inversion_errors(
    model: DeformationModel, net: Decoder, latents: torch.Tensor, batch_size: int
) -> dict[str, float]:
    """Errors (Å) of the inverse at the Gaussian centres for `(N, L)` (held-out) latents.

    ``inverse_*``: distance between the consensus centre and the inverse of its deformed
    position. ``first_order_*``: distance between the deformed position and the paper's
    first-order use of the inverse (``x - r(z, x)``, what :mod:`~dynamight_core.reconstruct`
    uses with ``method: inverse``). ``displacement_rms_a``: the forward displacements' size.
    """
    box_a = model.consensus.box_a
    points = model.consensus.positions.detach()
    inverse, first_order, moved = [], [], []
    with torch.no_grad():
        for batch in latents.split(batch_size):
            forward = model.decoder(batch, points)
            deformed = points[None] + forward
            back = deformed + net(batch, deformed)
            inverse.append(((back - points[None]).norm(dim=-1) * box_a).flatten())
            approximate = points[None] - net(batch, points)
            first_order.append(((approximate - deformed).norm(dim=-1) * box_a).flatten())
            moved.append((forward.norm(dim=-1) * box_a).flatten())
    errors: dict[str, float] = {}
    for name, values in (("inverse", inverse), ("first_order", first_order)):
        joined = torch.cat(values)
        errors[f"{name}_rms_a"] = float(joined.pow(2).mean().sqrt())
        errors[f"{name}_p95_a"] = float(joined.quantile(0.95))
        errors[f"{name}_max_a"] = float(joined.max())
    errors["displacement_rms_a"] = float(torch.cat(moved).pow(2).mean().sqrt())
    return errors
