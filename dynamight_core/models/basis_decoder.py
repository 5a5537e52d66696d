"""Basis decoder: displacement = latent coefficients x per-Gaussian basis displacements.

The ``mlp`` decoder (:mod:`~dynamight_core.models.decoder`) evaluates an 8 x 32 MLP for
every Gaussian of every particle: ~8k multiply-adds per Gaussian and particle forward. This
one splits it in two:

* a **positional network**, the same positional encoding and ELU MLP as ``mlp`` without
  the latent input, maps each consensus position ``c_j`` to ``K`` basis displacements
  ``B_j`` `(K, 3)`; it runs once per step for all Gaussians, shared by the batch;
* a **coefficient network**, a small ELU MLP, maps the latent ``z`` to ``K`` coefficients
  ``a(z)``, once per particle;

and ``delta_j(z) = sum_k a_k(z) B_jk``: ``3 K`` multiply-adds per Gaussian and particle
(12 at the default ``K = 4``, against ~8k). The coefficient network's last layer starts at zero, so
training starts from the undeformed consensus as ``mlp`` does; the basis starts random so
that the coefficients have something to move.

Its limit is the rank: for every Gaussian the displacements over all particles lie in the
span of its ``K`` basis vectors. Rigid motions are low-rank: a domain turning about a
fixed hinge moves each point by ``(cos t - 1) u + sin t v`` (rank 2 for any angle), so
``K = 4`` holds two domains turning in turn, each through a large angle; the coefficients
are non-linear in ``z``, so the path through that span can curve. The rank is also a
regulariser: on cryoJAX T4 lysozyme (SNR 0.1) ``K = 16`` fitted the noise in directions
the motion does not take (median error 0.13-0.19 of the motion against 0.10-0.15 at
``K = 4``, growing with every epoch), and on the ±60° demo hinge ``K = 4`` was the most
accurate of 4, 8 and 16 and of ``mlp`` (``benchmarks/bench_epochs.py``). A motion whose
directions vary in more independent ways (several domains at once, flexible loops) needs
a larger ``vae.decoder_basis``, or ``mlp``, kept as the reference (``vae.decoder``).

When the positions differ per latent (the inverse network, which takes deformed
positions), the positional network runs for every point of every latent, as ``mlp`` does.
"""

from __future__ import annotations

import torch
from torch import nn

from dynamight_core.models.decoder import encode_positions, encoding_frequencies


class BasisDecoder(nn.Module):
    """``delta_j(z) = a(z) . B(c_j)`` with ``K`` basis displacements per Gaussian.

    Parameters
    ----------
    latent_dim
        Dimension L of z.
    box_px
        Box size D (sets the highest encoding frequency, ``D/2`` rad per box unit).
    n_frequencies
        Frequencies of the positional encoding.
    width, n_layers
        Hidden units per layer and hidden layers of the positional network.
    n_basis
        Basis displacements K per Gaussian.
    coefficient_width, coefficient_layers
        Hidden units and hidden layers of the coefficient network.
    """

    frequencies: torch.Tensor  # (F,) encoding frequencies, rad per box unit (buffer)
    precision = "float32"  # the only arithmetic (the mlp decoder's setting, for describe())

    def __init__(
        self,
        latent_dim: int,
        box_px: int,
        n_frequencies: int = 10,
        width: int = 32,
        n_layers: int = 8,
        n_basis: int = 4,
        coefficient_width: int = 64,
        coefficient_layers: int = 2,
    ) -> None:
        super().__init__()
        self.register_buffer("frequencies", encoding_frequencies(box_px, n_frequencies))
        self.latent_dim = latent_dim
        self.n_basis = n_basis
        self.width = width
        self.n_layers = n_layers
        layers: list[nn.Module] = [nn.Linear(6 * n_frequencies, width), nn.ELU()]
        for _ in range(n_layers):
            layers += [nn.Linear(width, width), nn.ELU()]
        self.positional = nn.Sequential(*layers)
        self.basis = nn.Linear(width, 3 * n_basis)
        coefficients: list[nn.Module] = [nn.Linear(latent_dim, coefficient_width), nn.ELU()]
        for _ in range(coefficient_layers - 1):
            coefficients += [nn.Linear(coefficient_width, coefficient_width), nn.ELU()]
        self.coefficient_hidden = nn.Sequential(*coefficients)
        self.coefficients = nn.Linear(coefficient_width, n_basis)
        nn.init.zeros_(self.coefficients.weight)
        nn.init.zeros_(self.coefficients.bias)

    def low_precision(self, device: torch.device) -> bool:
        """Always False: the basis decoder runs in float32 (its cost is small)."""
        return False

    def basis_at(self, positions: torch.Tensor) -> torch.Tensor:
        """`(..., K, 3)` basis displacements (box units per unit coefficient) at `(..., 3)`."""
        hidden = self.positional(encode_positions(positions, self.frequencies))
        return self.basis(hidden).unflatten(-1, (self.n_basis, 3))

    def coefficients_of(self, z: torch.Tensor) -> torch.Tensor:
        """`(B, K)` coefficients of `(B, L)` latents."""
        return self.coefficients(self.coefficient_hidden(z))

    def forward(self, z: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """`(B, N, 3)` float32 displacements (box units) for `(B, L)` latents.

        ``positions`` (box units) are `(N, 3)`, shared by the batch (the basis is computed
        once), or `(B, N, 3)`, one set per latent.
        """
        basis = self.basis_at(positions)
        weights = self.coefficients_of(z)
        if basis.ndim == 3:
            return torch.einsum("bk,nkd->bnd", weights, basis)
        return torch.einsum("bk,bnkd->bnd", weights, basis)
