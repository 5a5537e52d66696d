"""Fourier shell correlation, resolution estimates and the masked, phase-randomised FSC.

Shells are nearest-integer radii of the rfft voxels (shell k spans ``k ± 0.5`` Fourier
pixels), and voxels that stand for a Friedel pair are counted twice, so the sums equal
those over the full transform. Shell k has resolution ``D * pixel_size / k`` Å.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.geometry.fourier import hermitian_weights_3d, shell_index_3d

RANDOMISE_BELOW_FSC = 0.8


@dataclass(frozen=True)
class FscCurve:
    """An FSC curve from shell 0 to Nyquist.

    Attributes
    ----------
    fsc
        `(D//2+1,)` correlation per shell.
    n_voxels
        `(D//2+1,)` number of Fourier voxels (full transform) per shell.
    box_px, pixel_size_a
        Geometry of the maps.
    """

    fsc: np.ndarray
    n_voxels: np.ndarray
    box_px: int
    pixel_size_a: float

    @property
    def shells(self) -> np.ndarray:
        """Shell indices 0 .. D//2."""
        return np.arange(len(self.fsc))

    @property
    def resolution_a(self) -> np.ndarray:
        """Resolution (Å) of every shell; ``inf`` for shell 0."""
        with np.errstate(divide="ignore"):
            return self.box_px * self.pixel_size_a / self.shells.astype(np.float64)

    def resolution_at(self, threshold: float) -> float:
        """Resolution (Å) where the curve first falls below ``threshold``.

        The crossing is interpolated linearly in spatial frequency between the last shell
        above and the first shell below. If the curve never falls below, Nyquist is
        returned; if it holds NaN (maps without signal, or broken ones), NaN.
        """
        if not np.isfinite(self.fsc).all():
            return math.nan
        below = np.flatnonzero(self.fsc[1:] < threshold)
        if below.size == 0:
            return 2.0 * self.pixel_size_a
        k = int(below[0]) + 1
        upper, lower = self.fsc[k - 1], self.fsc[k]
        crossing = k - 1 + (upper - threshold) / max(upper - lower, 1e-12)
        if crossing <= 0:
            return math.inf
        return self.box_px * self.pixel_size_a / crossing


def _shell_sums(
    map1_ft: torch.Tensor,
    map2_ft: torch.Tensor,
    shells: torch.Tensor,
    weights: torch.Tensor,
    n_shells: int,
) -> tuple[torch.Tensor, ...]:
    flat = shells.flatten()
    w = weights.expand_as(shells).flatten()

    def shell_sum(values: torch.Tensor) -> torch.Tensor:
        return torch.bincount(flat, weights=(values.flatten() * w), minlength=n_shells + 1)

    cross = shell_sum((map1_ft * map2_ft.conj()).real.double())
    power1 = shell_sum(map1_ft.abs().double() ** 2)
    power2 = shell_sum(map2_ft.abs().double() ** 2)
    count = torch.bincount(flat, weights=w, minlength=n_shells + 1)
    return cross, power1, power2, count


def fsc(
    map1: np.ndarray | torch.Tensor, map2: np.ndarray | torch.Tensor, pixel_size_a: float
) -> FscCurve:
    """FSC between two cubic maps of the same size.

    Parameters
    ----------
    map1, map2
        `(D, D, D)` maps.
    pixel_size_a
        Voxel size in Å.
    """
    a = torch.as_tensor(map1, dtype=torch.float64)
    b = torch.as_tensor(map2, dtype=torch.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"FSC needs two maps of the same cubic shape, got {a.shape} and {b.shape}")
    box = a.shape[0]
    n_shells = box // 2 + 1
    shells = shell_index_3d(box).clamp_(max=n_shells)
    weights = hermitian_weights_3d(box)
    cross, power1, power2, count = _shell_sums(
        torch.fft.rfftn(a), torch.fft.rfftn(b), shells, weights, n_shells
    )
    denominator = torch.sqrt(power1 * power2).clamp(min=1e-30)
    curve = (cross / denominator)[:n_shells].numpy()
    return FscCurve(
        fsc=curve,
        n_voxels=count[:n_shells].numpy().round().astype(np.int64),
        box_px=box,
        pixel_size_a=pixel_size_a,
    )


def randomise_phases(volume: np.ndarray, from_shell: int, seed: int) -> np.ndarray:
    """Copy of ``volume`` with random phases in every shell ``>= from_shell``.

    The phases are those of the transform of real white noise, so they are Hermitian
    and the amplitudes survive the inverse real transform unchanged.
    """
    data = torch.as_tensor(volume, dtype=torch.float64)
    box = data.shape[0]
    spectrum = torch.fft.rfftn(data)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.fft.rfftn(torch.randn(data.shape, generator=generator, dtype=torch.float64))
    phases = noise / noise.abs().clamp(min=1e-30)
    outer = shell_index_3d(box) >= from_shell
    spectrum = torch.where(outer, spectrum.abs() * phases, spectrum)
    return torch.fft.irfftn(spectrum, s=data.shape).numpy()


@dataclass(frozen=True)
class MaskedFsc:
    """Unmasked, masked, phase-randomised-masked and corrected FSC curves."""

    unmasked: FscCurve
    masked: FscCurve
    randomised_masked: FscCurve
    corrected: FscCurve
    randomised_from_shell: int


def masked_fsc(
    map1: np.ndarray, map2: np.ndarray, mask: np.ndarray, pixel_size_a: float, seed: int = 0
) -> MaskedFsc:
    """Masked FSC corrected for mask-induced correlation by phase randomisation.

    Phases are randomised beyond the shell where the unmasked FSC first falls below 0.8.
    As in RELION's post-processing, the corrected FSC equals the masked FSC up to two
    shells past that point (right at it, leakage from the intact shells inflates the
    randomised FSC) and ``(FSC_masked - FSC_random) / (1 - FSC_random)`` beyond, or 0
    where the randomised FSC exceeds the masked one (Chen et al., 2013).
    """
    unmasked = fsc(map1, map2, pixel_size_a)
    below = np.flatnonzero(unmasked.fsc[1:] < RANDOMISE_BELOW_FSC)
    start = int(below[0]) + 1 if below.size else len(unmasked.fsc)
    masked = fsc(map1 * mask, map2 * mask, pixel_size_a)
    random1 = randomise_phases(map1, start, seed) * mask
    random2 = randomise_phases(map2, start, seed + 1) * mask
    randomised = fsc(random1, random2, pixel_size_a)
    corrected_values = masked.fsc.copy()
    outer = np.arange(len(corrected_values)) >= start + 2
    noise = np.minimum(randomised.fsc[outer], 0.999)
    corrected_values[outer] = np.where(
        noise > masked.fsc[outer], 0.0, (masked.fsc[outer] - noise) / (1.0 - noise)
    )
    corrected = FscCurve(corrected_values, masked.n_voxels, masked.box_px, pixel_size_a)
    return MaskedFsc(unmasked, masked, randomised, corrected, start)


def expected_correlation_with_truth(half_map_fsc: np.ndarray) -> np.ndarray:
    """``sqrt(2 FSC / (1 + FSC))``: the expected FSC of the full map against the truth."""
    clipped = np.clip(half_map_fsc, 0.0, 1.0)
    return np.sqrt(2.0 * clipped / (1.0 + clipped))
