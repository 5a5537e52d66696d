"""Encoder: particle image -> (mu, log sigma^2) of the latent conformation z.

Input preparation (:func:`encoder_images`): the particle is moved to the box centre and
phase-flipped (multiplied by the sign of its CTF) in Fourier space, the transform is
cropped to ``input_px`` (a downsampled image), transformed back, multiplied by a soft
circular mask of the particle's radius and standardised with statistics of the training
images. The network is three linear layers with ReLU, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from dynamight_core.geometry.fourier import crop_fourier_2d, shift_phase_2d
from dynamight_core.geometry.masks import circular_mask


def encoder_images(
    images_ft: torch.Tensor, ctf: torch.Tensor, shifts_px: torch.Tensor, input_px: int
) -> torch.Tensor:
    """Centred, phase-flipped, downsampled real-space images `(B, input_px, input_px)`.

    Parameters
    ----------
    images_ft, ctf
        `(B, D, D//2+1)` image transforms and CTFs.
    shifts_px
        `(B, 2)` particle-centre positions relative to the box centre (pixels of D).
    input_px
        Size of the encoder's input image (even, at most D).
    """
    box = images_ft.shape[-2]
    centred = images_ft * shift_phase_2d(box, shifts_px) * torch.sign(ctf)
    cropped = crop_fourier_2d(centred, input_px) * (input_px / box) ** 2
    return torch.fft.irfft2(cropped, s=(input_px, input_px))


class ImageEncoder(nn.Module):
    """Three linear layers with ReLU from an image to the latent mean and log-variance.

    Parameters
    ----------
    input_px
        Input image size.
    latent_dim
        Dimension L of the latent space.
    mask_radius_px
        Radius of the soft circular mask, in input pixels.
    hidden
        Widths of the two hidden layers.
    """

    mask: torch.Tensor  # (input_px, input_px) soft circular mask (buffers, for the type checker)
    mean: torch.Tensor  # () mean of the masked training inputs
    std: torch.Tensor  # () their standard deviation

    def __init__(
        self,
        input_px: int,
        latent_dim: int,
        mask_radius_px: float,
        hidden: tuple[int, int] = (256, 128),
    ) -> None:
        super().__init__()
        self.input_px = input_px
        self.latent_dim = latent_dim
        self.hidden_sizes = hidden
        mask = circular_mask(input_px, mask_radius_px, soft_edge_px=max(1.0, input_px / 16))
        self.register_buffer("mask", torch.as_tensor(mask))
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.layers = nn.Sequential(
            nn.Linear(input_px * input_px, hidden[0]),
            nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Linear(hidden[1], 2 * latent_dim),
        )

    def set_normalisation(self, mean: float, std: float) -> None:
        """Standardisation of the masked inputs (statistics of training images)."""
        self.mean.fill_(mean)
        self.std.fill_(max(std, 1e-12))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Masked, standardised, flattened `(B, input_px^2)` inputs."""
        return (((images - self.mean) / self.std) * self.mask).flatten(1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, L)` latent means and log-variances of `(B, input_px, input_px)` images."""
        out = self.layers(self.prepare(images))
        return out[:, : self.latent_dim], out[:, self.latent_dim :]
