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


def _correct(masked: np.ndarray, randomised: np.ndarray, start: int) -> np.ndarray:
    """The masked FSC `(..., S)` corrected by the randomised one from shell ``start + 2``."""
    corrected = np.array(masked, dtype=np.float64, copy=True)
    noise = np.minimum(np.asarray(randomised)[start + 2 :], 0.999)
    outer = corrected[..., start + 2 :]
    corrected[..., start + 2 :] = np.where(noise > outer, 0.0, (outer - noise) / (1.0 - noise))
    return corrected


def masked_fsc(
    map1: np.ndarray,
    map2: np.ndarray,
    mask: np.ndarray,
    pixel_size_a: float,
    seed: int = 0,
    randomise_at_fsc: float = RANDOMISE_BELOW_FSC,
) -> MaskedFsc:
    """Masked FSC corrected for mask-induced correlation by phase randomisation.

    Phases are randomised beyond the shell where the unmasked FSC first falls below
    ``randomise_at_fsc`` (0.8, as RELION's default).
    As in RELION's post-processing, the corrected FSC equals the masked FSC up to two
    shells past that point (right at it, leakage from the intact shells inflates the
    randomised FSC) and ``(FSC_masked - FSC_random) / (1 - FSC_random)`` beyond, or 0
    where the randomised FSC exceeds the masked one (Chen et al., 2013).
    """
    unmasked = fsc(map1, map2, pixel_size_a)
    below = np.flatnonzero(unmasked.fsc[1:] < randomise_at_fsc)
    start = int(below[0]) + 1 if below.size else len(unmasked.fsc)
    masked = fsc(map1 * mask, map2 * mask, pixel_size_a)
    random1 = randomise_phases(map1, start, seed) * mask
    random2 = randomise_phases(map2, start, seed + 1) * mask
    randomised = fsc(random1, random2, pixel_size_a)
    corrected_values = _correct(masked.fsc, randomised.fsc, start)
    corrected = FscCurve(corrected_values, masked.n_voxels, masked.box_px, pixel_size_a)
    return MaskedFsc(unmasked, masked, randomised, corrected, start)


def expected_correlation_with_truth(half_map_fsc: np.ndarray) -> np.ndarray:
    """``sqrt(2 FSC / (1 + FSC))``: the expected FSC of the full map against the truth."""
    clipped = np.clip(half_map_fsc, 0.0, 1.0)
    return np.sqrt(2.0 * clipped / (1.0 + clipped))


def fsc_area(values: np.ndarray) -> float:
    """Mean FSC over shells 1 .. Nyquist: one number that weighs every shell alike."""
    return float(np.mean(np.asarray(values, dtype=np.float64)[1:]))


def flatten_amplitudes(map1: np.ndarray, map2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both `(D, D, D)` maps divided, shell by shell, by their joint RMS amplitude.

    The unmasked FSC is unchanged (it is blind to a per-shell scale), but a mask or a local
    window, which mixes neighbouring shells, no longer carries the strong low frequencies
    of a Wiener-filtered map into its weak high shells, where that leak would look like
    correlation. Post-processing and local resolution measure flattened half maps.
    """
    first = torch.as_tensor(map1, dtype=torch.float64)
    second = torch.as_tensor(map2, dtype=torch.float64)
    box = first.shape[0]
    n_shells = box // 2 + 1
    shells = shell_index_3d(box).clamp(max=n_shells)
    weights = hermitian_weights_3d(box).expand_as(shells)
    spectra = [torch.fft.rfftn(first), torch.fft.rfftn(second)]
    power = sum(spectrum.abs() ** 2 for spectrum in spectra)
    total = torch.bincount(shells.flatten(), (power * weights).flatten(), minlength=n_shells + 1)
    count = torch.bincount(shells.flatten(), weights.flatten(), minlength=n_shells + 1)
    rms = torch.sqrt(total / (2.0 * count.clamp(min=1.0))).clamp(min=1e-30)
    flat = [torch.fft.irfftn(spectrum / rms[shells], s=first.shape) for spectrum in spectra]
    return flat[0].numpy(), flat[1].numpy()


JACKKNIFE_POLAR_BINS = 3
JACKKNIFE_AZIMUTH_BINS = 8


def fourier_sectors(box_px: int) -> np.ndarray:
    """`(D, D, D//2+1)` sector 0..23 of each rfft voxel: contiguous blocks of directions.

    Direction bins: 3 of ``cos(polar angle) = kz / |k|`` over [-1, 1] times 8 of the
    azimuth ``atan2(ky, kx)`` over [-pi/2, pi/2] (kx >= 0 in an rfft). Each sector spans
    every shell and is much wider than the few voxels over which a mask correlates
    Fourier coefficients, so leaving one out at a time gives a block jackknife.
    """
    kz = np.fft.fftfreq(box_px)[:, None, None]
    ky = np.fft.fftfreq(box_px)[None, :, None]
    kx = np.fft.rfftfreq(box_px)[None, None, :]
    radius = np.sqrt(kz**2 + ky**2 + kx**2)
    cosine = np.divide(kz, radius, out=np.zeros(radius.shape), where=radius > 0)
    polar = np.clip(((cosine + 1.0) / 2.0 * JACKKNIFE_POLAR_BINS).astype(np.int64), 0, 2)
    azimuth = np.arctan2(np.broadcast_to(ky, radius.shape), np.broadcast_to(kx, radius.shape))
    turn = ((azimuth + np.pi / 2) / np.pi * JACKKNIFE_AZIMUTH_BINS).astype(np.int64)
    return polar * JACKKNIFE_AZIMUTH_BINS + np.clip(turn, 0, JACKKNIFE_AZIMUTH_BINS - 1)


def jackknife_fsc(map1: np.ndarray, map2: np.ndarray) -> np.ndarray:
    """`(G, D//2+1)` the FSC of two `(D, D, D)` maps with each Fourier sector left out."""
    a = torch.as_tensor(map1, dtype=torch.float64)
    b = torch.as_tensor(map2, dtype=torch.float64)
    box = a.shape[0]
    n_shells = box // 2 + 1
    shells = shell_index_3d(box).clamp(max=n_shells).flatten()
    weights = hermitian_weights_3d(box).expand(box, box, n_shells).flatten()
    sectors = torch.as_tensor(fourier_sectors(box)).flatten()
    n_groups = JACKKNIFE_POLAR_BINS * JACKKNIFE_AZIMUTH_BINS
    fa, fb = torch.fft.rfftn(a).flatten(), torch.fft.rfftn(b).flatten()
    index = sectors * (n_shells + 1) + shells
    size = n_groups * (n_shells + 1)

    def per_group(values: torch.Tensor) -> torch.Tensor:
        sums = torch.bincount(index, weights=values * weights, minlength=size)
        by_group = sums.reshape(n_groups, n_shells + 1)
        return (by_group.sum(dim=0, keepdim=True) - by_group)[:, :n_shells]

    cross = per_group((fa * fb.conj()).real)
    power = per_group(fa.abs() ** 2) * per_group(fb.abs() ** 2)
    return (cross / power.sqrt().clamp(min=1e-30)).numpy()


def corrected_like(masked: np.ndarray, curves: MaskedFsc) -> np.ndarray:
    """Other masked FSC values `(..., S)` (e.g. jackknife replicates) corrected as ``curves``.

    The same randomised FSC and start shell as ``curves``' own correction.
    """
    return _correct(masked, curves.randomised_masked.fsc, curves.randomised_from_shell)


def jackknife_standard_error(replicates: np.ndarray) -> float:
    """Standard error from `(G,)` leave-one-group-out estimates."""
    values = np.asarray(replicates, dtype=np.float64)
    count = len(values)
    return float(np.sqrt((count - 1) / count * np.sum((values - values.mean()) ** 2)))
