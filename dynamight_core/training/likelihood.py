"""Fourier-space image likelihood with a radial noise spectrum estimated from the data.

For an image transform ``Y`` and a prediction ``P`` (CTF included), the loss is
``sum_k |Y(k) - P(k)|^2 / sigma^2(|k|)`` over the rfft half-plane (Friedel mates counted
twice), divided by the number of Fourier components, so a perfect model scores about 1.
The zero frequency is left out: it only carries the image's background offset. The noise
power ``sigma^2`` per shell is the mean power of the residual ``Y - P`` of the data set's
own particles.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from dynamight_core.data.batches import BatchReader
from dynamight_core.geometry.fourier import hermitian_weights_2d, shell_index_2d
from dynamight_core.models.gaussians import GaussianModel

logger = logging.getLogger(__name__)


def max_shell_for(box_px: int, pixel_size_a: float, max_resolution_a: float | None) -> int:
    """Highest shell used: Nyquist, or the shell of ``max_resolution_a``."""
    nyquist = box_px // 2
    if max_resolution_a is None:
        return nyquist
    return int(min(nyquist, np.floor(box_px * pixel_size_a / max_resolution_a)))


class FourierLikelihood:
    """Whitened squared residual per image.

    Parameters
    ----------
    noise_power
        `(D//2+1,)` noise power per shell (shells 0 .. Nyquist).
    box_px
        Image size D.
    max_shell
        Shells above it are ignored.
    """

    def __init__(self, noise_power: torch.Tensor, box_px: int, max_shell: int) -> None:
        device = noise_power.device
        index = shell_index_2d(box_px, device)
        shells = index.clamp(max=box_px // 2)
        use = (shells >= 1) & (index <= max_shell)
        multiplicity = hermitian_weights_2d(box_px, device)
        weights = multiplicity / noise_power.clamp(min=float(noise_power.max()) * 1e-8)[shells]
        self.weights = torch.where(use, weights, 0.0).float()
        self.n_components = float((multiplicity * use).sum())
        self.noise_power = noise_power
        self.max_shell = max_shell

    def per_image(self, predicted_ft: torch.Tensor, data_ft: torch.Tensor) -> torch.Tensor:
        """`(B,)` whitened squared residual per Fourier component."""
        residual = data_ft - predicted_ft
        power = residual.real**2 + residual.imag**2
        return (power * self.weights).sum(dim=(-2, -1)) / self.n_components


@torch.no_grad()
def solve_image_scale(
    model: GaussianModel,
    reader: BatchReader,
    indices: np.ndarray,
    weights: torch.Tensor,
    batch_size: int,
) -> float:
    """Least-squares factor between the model's images and the data; applied to the masses."""
    numerator = denominator = 0.0
    for batch in reader.batches(indices, batch_size):
        predicted = model.projections(batch.rotations, batch.shifts_a, batch.ctf)
        numerator += float(((predicted.conj() * batch.images_ft).real * weights).sum())
        denominator += float(((predicted.real**2 + predicted.imag**2) * weights).sum())
    scale = numerator / denominator if denominator > 0 else 1.0
    if scale > 0:
        model.log_masses.add_(float(np.log(scale)))
    return scale


@torch.no_grad()
def estimate_noise_power(
    model: GaussianModel, reader: BatchReader, indices: np.ndarray, batch_size: int
) -> torch.Tensor:
    """`(D//2+1,)` mean residual power per shell over the particles ``indices``."""
    box = model.box_px
    shells = shell_index_2d(box, reader.device).clamp(max=box // 2).flatten()
    multiplicity = hermitian_weights_2d(box, reader.device).expand(box, -1).flatten()
    total = torch.zeros(box // 2 + 1, dtype=torch.float64, device=reader.device)
    count = torch.bincount(shells, weights=multiplicity.double(), minlength=box // 2 + 1)
    for batch in reader.batches(indices, batch_size):
        residual = batch.images_ft - model.projections(batch.rotations, batch.shifts_a, batch.ctf)
        power = (residual.real**2 + residual.imag**2).sum(0).flatten().double() * multiplicity
        total += torch.bincount(shells, weights=power, minlength=box // 2 + 1)
    return (total / (count * len(indices))).float()


@torch.no_grad()
def mean_loss(
    model: GaussianModel,
    likelihood: FourierLikelihood,
    reader: BatchReader,
    indices: np.ndarray,
    batch_size: int,
) -> float:
    """Mean per-image loss over ``indices`` (no gradients)."""
    total = 0.0
    for batch in reader.batches(indices, batch_size):
        predicted = model.projections(batch.rotations, batch.shifts_a, batch.ctf)
        total += float(likelihood.per_image(predicted, batch.images_ft).sum())
    return total / max(len(indices), 1)
