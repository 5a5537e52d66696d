"""Decoder: latent z and a Gaussian's consensus position -> that Gaussian's displacement.

Each consensus position (box units) is encoded with sines and cosines at
``n_frequencies`` frequencies spaced geometrically from 1 to ``D/2`` radians per box unit
(as the original DynaMight); the encoding and z feed an MLP of ``n_layers`` layers of
``width`` units with ELU, whose last layer starts at zero so training starts from the
undeformed consensus. The first layer is split in two: its positional part is computed once per step
for all Gaussians, its latent part once per particle, and the two are added -- the same
result as the concatenated input at a fraction of the cost.

The hidden layers evaluate one small MLP for every Gaussian of every particle and dominate
a training step. ``precision="bfloat16"`` runs them in bfloat16 (autocast: half the memory
traffic, the products on the bfloat16 units of recent CPUs and GPUs), about 1.7x faster
than float32 (``benchmarks/bench_throughput.py``); the positional part, the output layer
and the displacements stay float32. It is not the default: on the demo's hinge the
bfloat16 decoder's motions were about 30% further from the truth (median error 20% of the
amplitude instead of 15-17%), rougher (a deformation penalty 3x higher) and no longer
beat the null control. ReLU and SiLU instead of ELU would save another third of the
decoder's time, but on the demo neither learned any motion in 8 epochs, so the decoder
keeps the original's ELU.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "bfloat16")


def bfloat16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` has native bfloat16 arithmetic (else bfloat16 is emulated, slow).

    CUDA: compute capability 8.0 or newer (A100, H100, RTX 30xx and later); CPU: AVX512-BF16
    or AMX.
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def encoding_frequencies(box_px: int, n_frequencies: int) -> torch.Tensor:
    """`(F,)` encoding frequencies (rad per box unit), geometric from 1 to ``D/2``."""
    steps = torch.arange(n_frequencies, dtype=torch.float32)
    span = max(n_frequencies - 1, 1)
    return (box_px / 2) ** (steps / span)


def encode_positions(positions: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """`(..., 6F)` sines and cosines of `(..., 3)` positions (box units) at `(F,)` frequencies."""
    angles = (positions[..., None] * frequencies).flatten(-2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


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
    precision
        Arithmetic of the hidden layers: ``"float32"`` or ``"bfloat16"`` (autocast; float32
        on devices without native bfloat16, where it would be slower).
    """

    frequencies: torch.Tensor  # (F,) encoding frequencies, rad per box unit (buffer)

    def __init__(
        self,
        latent_dim: int,
        box_px: int,
        n_frequencies: int = 10,
        width: int = 32,
        n_layers: int = 8,
        precision: str = "float32",
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"decoder precision: expected one of {PRECISIONS}, got {precision!r}")
        self.register_buffer("frequencies", encoding_frequencies(box_px, n_frequencies))
        self.position_layer = nn.Linear(6 * n_frequencies, width, bias=False)
        self.latent_layer = nn.Linear(latent_dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(n_layers))
        self.output = nn.Linear(width, 3)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        self.activation = nn.ELU()
        self.precision = precision

    def low_precision(self, device: torch.device) -> bool:
        """Whether the hidden layers run in bfloat16 on ``device``."""
        if self.precision == "float32":
            return False
        return bfloat16_is_fast(device)

    def _autocast(self, device: torch.device) -> AbstractContextManager[object]:
        if not self.low_precision(device):
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def encode_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """`(..., 6F)` sines and cosines of `(..., 3)` positions in box units."""
        return encode_positions(positions, self.frequencies)

    def forward(self, z: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """`(B, N, 3)` float32 displacements (box units) for `(B, L)` latents.

        ``positions`` (box units) are `(N, 3)`, shared by the batch, or `(B, N, 3)`, one
        set per latent.
        """
        # the positional part in float32: rounding each Gaussian's encoding to bfloat16
        # would give every Gaussian its own fixed error, a rough field
        per_gaussian = self.position_layer(self.encode_positions(positions))
        if per_gaussian.ndim == 2:
            per_gaussian = per_gaussian[None]
        hidden = self.activation(per_gaussian + self.latent_layer(z)[:, None])
        with self._autocast(z.device):
            for layer in self.hidden:
                hidden = self.activation(layer(hidden))
        return self.output(hidden.float())
