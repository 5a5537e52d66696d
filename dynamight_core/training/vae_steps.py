"""One half set's VAE: the loss of a batch, the balance of its terms, validation, latents.

Also what later stages read from a trained VAE: latent tables and displacements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dynamight_core.data.batches import BatchReader, ParticleBatch
from dynamight_core.geometry.fourier import crop_fourier_2d
from dynamight_core.io.star import ParticleSet
from dynamight_core.models.deformation import DeformationModel
from dynamight_core.models.encoder import encoder_images
from dynamight_core.physics.render import render_projections
from dynamight_core.training.half_set_vae import HalfSetVae, TrainingGrid
from dynamight_core.training.likelihood import FourierLikelihood
from dynamight_core.training.regularisation import NeighbourGraph, deformation_penalty


@dataclass
class LossTerms:
    """Per-batch loss terms (tensors with gradients)."""

    data: torch.Tensor
    kl: torch.Tensor
    deformation: torch.Tensor


def kl_divergence(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """`(B,)` KL divergence of N(mu, exp(log_var)) from N(0, 1)."""
    return -0.5 * (1.0 + log_var - mu**2 - torch.exp(log_var)).sum(dim=1)


def encoder_inputs(batch: ParticleBatch, grid: TrainingGrid) -> torch.Tensor:
    """`(B, e, e)` encoder images: centred, phase-flipped, Fourier-cropped particles."""
    full_pixel_a = grid.pixel_size_a * grid.box_px / batch.images_ft.shape[-2]
    return encoder_images(
        batch.images_ft, batch.ctf, batch.shifts_a / full_pixel_a, grid.encoder_px
    )


def encode(
    model: DeformationModel, batch: ParticleBatch, grid: TrainingGrid
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, L)` latent means and log-variances of a batch."""
    return model.encoder(encoder_inputs(batch, grid))


def predict(
    model: DeformationModel, batch: ParticleBatch, grid: TrainingGrid, deformed_a: torch.Tensor
) -> torch.Tensor:
    """`(B, d, d//2+1)` CTF-modulated image transforms on the training grid."""
    consensus = model.consensus
    return render_projections(
        deformed_a,
        consensus.channel_masses(),
        consensus.widths_a(),
        batch.rotations,
        batch.shifts_a,
        grid.box_px,
        grid.pixel_size_a,
        ctf=crop_fourier_2d(batch.ctf, grid.box_px),
    )


def batch_losses(
    model: DeformationModel,
    batch: ParticleBatch,
    grid: TrainingGrid,
    likelihood: FourierLikelihood,
    graph: NeighbourGraph,
    kl_weight: float,
) -> LossTerms:
    """Data term (whitened, per Fourier component), weighted KL and deformation penalty."""
    mu, log_var = encode(model, batch, grid)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
    deformed = model.deformed_positions_a(z)
    predicted = predict(model, batch, grid, deformed)
    data = likelihood.per_image(predicted, crop_fourier_2d(batch.images_ft, grid.box_px)).mean()
    kl = kl_weight * kl_divergence(mu, log_var).mean() / likelihood.n_components
    return LossTerms(data, kl, deformation_penalty(deformed, graph))


def balanced_weight(model: DeformationModel, terms: LossTerms, factor: float) -> float:
    """``factor x |grad data| / |grad deformation|`` over the decoder's parameters.

    The deformation gradient is floored at 5e-4 of the data gradient (it is zero while
    the decoder still outputs no displacement), as in the original DynaMight.
    """
    parameters = [p for p in model.decoder.parameters() if p.requires_grad]

    def norm(loss: torch.Tensor) -> float:
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        total = torch.zeros((), device=loss.device)
        for grad in grads:
            if grad is not None:
                total = total + (grad**2).sum()
        return float(torch.sqrt(total))

    data_norm = norm(terms.data)
    return factor * data_norm / max(norm(terms.deformation), 5e-4 * data_norm, 1e-30)


def refine_latents(
    model: DeformationModel,
    batch: ParticleBatch,
    grid: TrainingGrid,
    likelihood: FourierLikelihood,
    start: torch.Tensor,
    steps: int,
    lr: float,
    prior_weight: float,
) -> torch.Tensor:
    """Latents that best explain each particle's own image, starting from the encoder's.

    Minimises ``sum_k w_k |Y_k - P_k(z)|^2 + prior_weight |z|^2 / 2`` per particle with Adam
    (the decoder and the consensus are fixed). The encoder alone generalises poorly from a
    few thousand noisy images (it learns its training images); these few steps use the
    known pose, the CTF and the decoder to read the conformation of any particle,
    including held-out ones -- semi-amortised inference (Kim et al., 2018).
    """
    z, _ = _refined_and_misfit(model, batch, grid, likelihood, start, steps, lr, prior_weight)
    return z


def _refined_and_misfit(
    model: DeformationModel,
    batch: ParticleBatch,
    grid: TrainingGrid,
    likelihood: FourierLikelihood,
    start: torch.Tensor,
    steps: int,
    lr: float,
    prior_weight: float,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`refine_latents`, and each particle's `(B,)` data term before the last step.

    ``None`` without steps. It is the validation loss, with no forward pass of its own
    (a fifth of the validation's cost at 3 tracking steps).
    """
    if steps <= 0:
        return start.detach(), None
    z = start.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    data = crop_fourier_2d(batch.images_ft, grid.box_px)
    per_image = None
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            predicted = predict(model, batch, grid, model.deformed_positions_a(z))
            per_image = likelihood.per_image(predicted, data)
            misfit = per_image.sum() * likelihood.n_components
            (misfit + 0.5 * prior_weight * (z**2).sum()).backward(inputs=[z])
            optimizer.step()
    assert per_image is not None
    return z.detach(), per_image.detach()


def _refine_batch(
    vae: HalfSetVae,
    batch: ParticleBatch,
    start: Callable[[torch.Tensor], torch.Tensor] | None,
    steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Refined latents, encoder means and sigmas, and data terms before the last step.

    The data terms are ``None`` without steps. ``start`` maps the `(B, L)` encoder means
    to the starting latents (default: the means).
    """
    with torch.no_grad():
        mu, log_var = encode(vae.model, batch, vae.grid)
    initial = mu if start is None else start(mu)
    z, misfit = _refined_and_misfit(
        vae.model,
        batch,
        vae.grid,
        vae.likelihood,
        initial,
        steps,
        vae.refinement.lr,
        vae.refinement.prior_weight,
    )
    return z, mu, torch.exp(0.5 * log_var), misfit


def _continuing(latents: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Start from the given `(B, L)` latents (ignoring the encoder's means)."""
    return lambda mu: latents.to(mu)


def _known_or_encoded(
    known: dict[int, torch.Tensor], rows: np.ndarray
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Start each particle from its known latent if it has one, else from the encoder's."""

    def start(mu: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [known[int(row)].to(mu) if int(row) in known else mu[i] for i, row in enumerate(rows)]
        )

    return start


def validation_loss(
    vae: HalfSetVae,
    reader: BatchReader,
    indices: np.ndarray,
    previous: torch.Tensor | None = None,
) -> tuple[float, torch.Tensor]:
    """Mean data term over ``indices`` at refined latents, and those latents `(P, L)`.

    ``previous`` holds the latents of the last call (same order); refinement continues
    from them for ``tracking_steps`` steps, else starts from the encoder for ``steps``.
    The data term is each particle's at the start of its last step (the latents one step
    before those returned): it comes with that step's forward pass, for free.
    """
    total, kept, position = 0.0, [], 0
    refinement = vae.refinement
    for batch in reader.tracked(indices, vae.batch_size, "validation"):
        size = len(batch.indices)
        start = None if previous is None else _continuing(previous[position : position + size])
        steps = refinement.steps if previous is None else refinement.tracking_steps
        z, _, _, misfit = _refine_batch(vae, batch, start, steps)
        if misfit is None:  # no tracking steps: score the latents as they are
            with torch.no_grad():
                predicted = predict(vae.model, batch, vae.grid, vae.model.deformed_positions_a(z))
                cropped = crop_fourier_2d(batch.images_ft, vae.grid.box_px)
                misfit = vae.likelihood.per_image(predicted, cropped)
        total += float(misfit.sum())
        kept.append(z.cpu())
        position += size
    return total / max(len(indices), 1), torch.cat(kept)


def latents(
    vae: HalfSetVae,
    reader: BatchReader,
    indices: np.ndarray,
    known: dict[int, torch.Tensor] | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (rows, refined latents, encoder means, encoder sigmas) batch by batch.

    Particles in ``known`` (row -> latent) continue from that latent, the others from the
    encoder's estimate; all get ``vae.refinement.steps`` steps.
    """
    for batch in reader.tracked(indices, vae.batch_size, "latents"):
        start = _known_or_encoded(known, batch.indices) if known else None
        z, mu, sigma, _ = _refine_batch(vae, batch, start, vae.refinement.steps)
        yield batch.indices, z.cpu(), mu.cpu(), sigma.cpu()


NORMALISATION_PARTICLES = 512


@torch.no_grad()
def normalise_encoder(
    model: DeformationModel, reader: BatchReader, rows: np.ndarray, grid: TrainingGrid
) -> None:
    """Standardise encoder inputs with the statistics of (up to 512 of) ``rows``' images."""
    images = encoder_inputs(reader.read(rows[:NORMALISATION_PARTICLES]), grid)
    inside = model.encoder.mask > 0.5
    values = images[:, inside]
    model.encoder.set_normalisation(float(values.mean()), float(values.std()))


def latent_table(
    vae: HalfSetVae,
    reader: BatchReader,
    particles: ParticleSet,
    rows: tuple[np.ndarray, np.ndarray],
    known: dict[int, torch.Tensor],
) -> pd.DataFrame:
    """Refined latent means (``mu_*``), encoder sigmas and means, keyed by STAR row.

    Every row also carries the model's ``half`` and training run (``model_run``), so that
    a consumer can check that the table and a model belong together.

    ``rows`` are the half set's (training, validation) rows; ``known`` latents (row ->
    `(L,)`) are where refinement of those particles continues from.
    """
    train, validation = rows
    chunks: dict[str, list[np.ndarray]] = {"row": [], "mu": [], "encoder_mu": [], "sigma": []}
    everything = np.sort(np.concatenate([train, validation]))
    for batch_rows, refined, mu, sigma in latents(vae, reader, everything, known):
        for key, values in zip(
            chunks, (batch_rows, refined.numpy(), mu.numpy(), sigma.numpy()), strict=True
        ):
            chunks[key].append(values)
    row = np.concatenate(chunks["row"])
    table = pd.DataFrame(
        {
            "row": row,
            "rlnImageName": np.array(particles.image_names())[row],
            "validation": np.isin(row, validation).astype(int),
            "half": vae.half,
            "model_run": vae.run,
        }
    )
    for name in ("mu", "sigma", "encoder_mu"):
        values = np.concatenate(chunks[name])
        for dim in range(values.shape[1]):
            table[f"{name}_{dim}"] = values[:, dim]
    return table


def displacements_at(
    vae: HalfSetVae, reader: BatchReader, rows: np.ndarray, points: torch.Tensor
) -> np.ndarray:
    """`(P, M, 3)` displacements (Å) at `(M, 3)` points (box units) of the particles ``rows``.

    Each particle's latent is refined against its own image first (``vae.refinement``).
    """
    fields = []
    for _, refined, _, _ in latents(vae, reader, rows):
        with torch.no_grad():
            field = vae.model.decoder(refined.to(points.device), points)
            fields.append((field * vae.model.consensus.box_a).cpu().numpy())
    return np.concatenate(fields)
