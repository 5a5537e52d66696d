"""Decoder: latent z and a Gaussian's consensus position -> that Gaussian's displacement.

Each consensus position (box units) is encoded with sines and cosines at
``n_frequencies`` frequencies spaced geometrically from 1 to ``D/2`` radians per box unit
(as the original DynaMight); the encoding and z feed an MLP of ``n_layers`` layers of
``width`` units with ELU, whose last layer starts at zero so training starts from the
undeformed consensus. The first layer is split in two: its positional part is computed
once per step for all Gaussians, its latent part once per particle, and the two are added
-- the same result as the concatenated input at a fraction of the cost.
"""

from __future__ import annotations

import torch
from torch import nn


class DisplacementDecoder(nn.Module):
    """MLP ``(PE(c_j), z) -> delta_j`` evaluated for every Gaussian j of every particle.

    Parameters
    ----------
    latent_dim
        Dimension L of z.
    box_px
        Box size D (sets the highest encoding frequency, ``D/2`` rad per box unit).
    n_frequencies
        Frequencies of the positional encoding.
    width, n_layers
        Hidden units per layer and number of hidden layers.
    """

    frequencies: torch.Tensor  # (F,) encoding frequencies, rad per box unit (buffer)

    def __init__(
        self,
        latent_dim: int,
        box_px: int,
        n_frequencies: int = 10,
        width: int = 32,
        n_layers: int = 8,
    ) -> None:
        super().__init__()
        steps = torch.arange(n_frequencies, dtype=torch.float32)
        span = max(n_frequencies - 1, 1)
        self.register_buffer("frequencies", (box_px / 2) ** (steps / span))
        self.position_layer = nn.Linear(6 * n_frequencies, width, bias=False)
        self.latent_layer = nn.Linear(latent_dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(n_layers))
        self.output = nn.Linear(width, 3)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        self.activation = nn.ELU()

    def encode_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """`(..., 6F)` sines and cosines of `(..., 3)` positions in box units."""
        angles = (positions[..., None] * self.frequencies).flatten(-2)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def forward(self, z: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """`(B, N, 3)` displacements (box units) for `(B, L)` latents.

        ``positions`` (box units) are `(N, 3)`, shared by the batch, or `(B, N, 3)`, one
        set per latent.
        """
        per_gaussian = self.position_layer(self.encode_positions(positions))
        if per_gaussian.ndim == 2:
            per_gaussian = per_gaussian[None]
        hidden = self.activation(per_gaussian + self.latent_layer(z)[:, None])
        for layer in self.hidden:
            hidden = self.activation(layer(hidden))
        return self.output(hidden)
