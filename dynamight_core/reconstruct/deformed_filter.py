"""The Wiener filter of a deformed half map and its filtered backprojection.

Without deformation the normal operator ``N`` is a convolution whose transform ``H`` on the
twice-padded box is known (:mod:`.rigid_kernel`). The filtered backprojection
``(H + Lambda)^-1 b`` is the paper's homogeneous-filter approximation (eq. 7): it assumes
the deformation leaves ``N`` unchanged. ``b`` is the deformed backprojection on the map's
support and the undeformed one beyond it, the rays of the images that a map of the support
alone would cut off. Applied to the residual of the normal equations, the same filter is
the preconditioner of the iterative solve (:mod:`.deformed_solve`).

``Lambda`` (``1/tau^2`` per shell) comes from the half alone: the FSC between its two
quarter maps gives the half's SNR per shell (``2 FSC / (1 - FSC)``), as in the consensus
reconstruction. Nothing of the other half enters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dynamight_core.geometry.masks import spherical_mask
from dynamight_core.metrics.fsc import fsc
from dynamight_core.reconstruct.deformed import DeformedGeometry, DeformedSums, backproject
from dynamight_core.reconstruct.deformed_projector import SupportGrid
from dynamight_core.reconstruct.homogeneous import (
    MASK_EDGE_PX,
    MASK_MARGIN_PX,
    particle_radius_px,
)
from dynamight_core.reconstruct.insertion import scale_shells
from dynamight_core.reconstruct.rigid_kernel import PAD

PRELIMINARY_REGULARISER = 1e-4
FSC_CLIP = (1e-3, 0.9999)
BAND_MARGIN_PX = 0.5  # as the consensus map's MAP_MARGIN_PX


def _padded_radius(box_px: int, device: torch.device) -> torch.Tensor:
    """`(G, G, G//2+1)` radius of every voxel of the padded rfft grid, in unpadded shells."""
    size = PAD * box_px
    jz = torch.fft.fftfreq(size, d=1.0 / size, device=device)
    jx = torch.arange(size // 2 + 1, device=device, dtype=torch.float32)
    return torch.sqrt(jz[:, None, None] ** 2 + jz[None, :, None] ** 2 + jx**2) / PAD


def _padded_shells(box_px: int, device: torch.device) -> torch.Tensor:
    """`(G, G, G//2+1)` shell (of the unpadded box) of every voxel of the padded rfft grid."""
    return torch.round(_padded_radius(box_px, device)).long().clamp_(max=box_px // 2)


class WienerFilter:
    """``Lambda`` and ``(H + Lambda)^-1`` on a support, applied on the padded grid.

    Parameters
    ----------
    support
        The map's voxels.
    transfer
        `(G, G, G//2+1)` transfer ``H`` of the undeformed normal operator.
    regulariser
        `(D//2+1,)` ``1/tau^2`` per shell, in the units of ``H``.
    """

    def __init__(
        self, support: SupportGrid, transfer: torch.Tensor, regulariser: torch.Tensor
    ) -> None:
        self.support = support
        shells = _padded_shells(support.box_px, transfer.device)
        self.regulariser = regulariser.to(transfer)
        self.lam = self.regulariser[shells]
        # the data hold no frequency beyond the inserted band: nothing is put there
        radius = _padded_radius(support.box_px, transfer.device)
        band = radius <= support.box_px / 2 + BAND_MARGIN_PX
        # H is the transform of a truncated kernel: with few particles it can dip below zero
        positive = transfer.clamp(min=0.0) + self.lam
        self.inverse = torch.where(band, 1.0 / positive.clamp(min=1e-30), 0.0)

    def _window(self) -> tuple[slice, slice, slice]:
        box = self.support.box_px
        start = (PAD * box - box) // 2
        return (slice(start, start + box),) * 3

    def padded(self, values: torch.Tensor, around: torch.Tensor | None = None) -> torch.Tensor:
        """`(G, G, G)` box holding `(V,)` support values, ``around`` (or zero) elsewhere."""
        size = PAD * self.support.box_px
        box = values.new_zeros(size, size, size) if around is None else around.clone()
        inner = box[self._window()].reshape(-1)
        inner[self.support.index] = values
        box[self._window()] = inner.view((self.support.box_px,) * 3)
        return box

    def _multiply(self, padded: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        size = padded.shape[0]
        result = torch.fft.irfftn(torch.fft.rfftn(padded) * multiplier, s=(size,) * 3)
        return self.support.from_volume(result[self._window()])

    def _apply(self, values: torch.Tensor, multiplier: torch.Tensor) -> torch.Tensor:
        return self._multiply(self.padded(values), multiplier)

    def solve_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """`(V,)` support values of ``(H + Lambda)^-1`` applied to a `(G, G, G)` box."""
        return self._multiply(padded, self.inverse)

    def regularise(self, values: torch.Tensor) -> torch.Tensor:
        """``Lambda f`` for `(V,)` map values."""
        return self._apply(values, self.lam)

    def precondition(self, values: torch.Tensor) -> torch.Tensor:
        """``(H + Lambda)^-1 r`` for `(V,)` values."""
        return self._apply(values, self.inverse)


def mean_per_shell(grid: torch.Tensor, box_px: int) -> torch.Tensor:
    """`(D//2+1,)` mean of a padded rfft grid in each shell of the unpadded box."""
    shells = _padded_shells(box_px, grid.device).flatten()
    total = torch.bincount(shells, weights=grid.flatten().double(), minlength=box_px // 2 + 1)
    count = torch.bincount(shells, minlength=box_px // 2 + 1).clamp(min=1)
    return (total / count).float()


@dataclass(frozen=True)
class FilteredHalf:
    """The filtered backprojection of a half and what it was made with.

    Attributes
    ----------
    values
        `(V,)` map on the support.
    filter
        The half's Wiener filter (its regulariser from the quarters' FSC).
    quarter_fsc
        `(D//2+1,)` FSC between the half's two quarter maps.
    gain
        `(D//2+1,)` the rest of the Wiener filter per shell, applied after the solvent mask
        (:func:`masked_half_map`).
    """

    values: torch.Tensor
    filter: WienerFilter
    quarter_fsc: np.ndarray
    gain: torch.Tensor


def filtered_backprojection(
    sums: DeformedSums, support: SupportGrid, pixel_size_a: float, tau2_fudge: float
) -> FilteredHalf:
    """``(H + Lambda)^-1 b`` with ``Lambda`` from the FSC between the half's quarters."""
    box = sums.box_px
    transfers = list(sums.transfers)
    means = [mean_per_shell(transfer, box) for transfer in transfers]
    quarter_maps = []
    for quarter in (0, 1):
        floor = PRELIMINARY_REGULARISER * means[quarter]
        preliminary = WienerFilter(support, transfers[quarter], floor)
        values = preliminary.solve_padded(
            preliminary.padded(sums.numerators[quarter], sums.rigid[quarter])
        )
        quarter_maps.append(support.to_volume(values).cpu().numpy())
    curve = fsc(quarter_maps[0], quarter_maps[1], pixel_size_a).fsc
    clipped = np.clip(curve, *FSC_CLIP)
    snr_half = torch.as_tensor(2.0 * clipped / (1.0 - clipped), dtype=torch.float32)
    regulariser = (means[0] + means[1]).cpu() / (tau2_fudge * snr_half)
    regulariser = regulariser.clamp(min=1e-12).to(sums.transfers.device)
    # as the consensus map (FourierAccumulator.reconstruct_parts): the term inside the
    # solve is capped at the shell's mean transfer, the rest of the filter is a per-shell
    # gain after the mask, which would otherwise leak strong shells into weak ones
    mean = (means[0] + means[1]).to(regulariser)
    capped = torch.minimum(regulariser, mean)
    gain = (mean + capped) / (mean + regulariser).clamp(min=1e-30)
    half_filter = WienerFilter(support, transfers[0] + transfers[1], capped)
    # the deformed backprojection on the support, the undeformed one beyond it (rays of the
    # images that a map of the support alone would cut off)
    padded = half_filter.padded(sums.numerators.sum(0), sums.rigid.sum(0))
    values = half_filter.solve_padded(padded)
    return FilteredHalf(values, half_filter, curve, gain)


def masked_half_map(values: torch.Tensor, support: SupportGrid, gain: torch.Tensor) -> np.ndarray:
    """`(D, D, D)` half map: a soft sphere around the particle, then the per-shell gain.

    The sphere is the consensus map's (:func:`~.homogeneous.particle_radius_px` of this map,
    plus a margin, with a raised-cosine edge), so both maps are masked the same way; it
    comes from this half map only.
    """
    volume = support.to_volume(values)
    box = support.box_px
    radius = particle_radius_px(volume.cpu().numpy()) + MASK_MARGIN_PX
    radius = min(radius, support.radius_px - MASK_EDGE_PX, box / 2 - MASK_EDGE_PX)
    mask = torch.from_numpy(spherical_mask(box, radius, MASK_EDGE_PX)).to(volume)
    return scale_shells(volume * mask, gain).cpu().numpy()


def reconstruct_subset(
    geometry: DeformedGeometry,
    half_rows: np.ndarray,
    rows: np.ndarray,
    batch_size: int,
    pixel_size_a: float,
    tau2_fudge: float,
) -> np.ndarray:
    """`(D, D, D)` deformed map of some of a half set's particles (e.g. those of one state).

    The half map's steps without the iterative refinement: deformed backprojection of
    ``rows`` (a subset of ``half_rows``), the Wiener filter from the FSC between the
    subset's own two quarters, the soft sphere and the per-shell gain.
    """
    sums = backproject(geometry, half_rows, rows, batch_size)
    support = geometry.projector.support
    start = filtered_backprojection(sums, support, pixel_size_a, tau2_fudge)
    return masked_half_map(start.values, support, start.gain)


@torch.no_grad()
def push_to_state(geometry: DeformedGeometry, volume: np.ndarray, latent: np.ndarray) -> np.ndarray:
    """`(D, D, D)` a consensus-frame map moved into the state of one latent point.

    Each voxel of the support keeps its content and moves to ``x + d(z, x)`` (the half
    set's forward field on the control grid, as the reconstruction uses it), spread onto
    the grid with trilinear weights: mass is preserved, at the price of a blur of about
    one voxel. This turns a deformed reconstruction (consensus frame) into a map of the
    state ``z``.
    """
    support = geometry.projector.support
    device = support.positions_px.device
    values = support.from_volume(torch.as_tensor(volume, dtype=torch.float32, device=device))
    z = torch.as_tensor(np.asarray(latent)[None], dtype=torch.float32, device=device)
    moved = geometry.control.displacements_px(geometry.field, z, geometry.weights)[0]
    return spread_trilinear(support.positions_px + moved, values, support.box_px).cpu().numpy()


def spread_trilinear(positions_px: torch.Tensor, values: torch.Tensor, box_px: int) -> torch.Tensor:
    """`(D, D, D)` grid (z, y, x) with `(V,)` values spread at `(V, 3)` positions (x, y, z).

    Positions are in px from the box centre ``D//2``; each value goes to the 8 voxels around
    its position with trilinear weights (their sum is the value); parts falling outside
    the box are dropped.
    """
    where = positions_px + box_px // 2
    floor = torch.floor(where)
    frac = where - floor
    base = floor.long()
    grid = values.new_zeros(box_px**3)
    for corner in range(8):
        step = torch.tensor(
            [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1], device=positions_px.device
        )
        index = base + step
        weight = torch.where(step.bool(), frac, 1.0 - frac).prod(dim=1)
        inside = ((index >= 0) & (index < box_px)).all(dim=1)
        flat = (index[:, 2] * box_px + index[:, 1]) * box_px + index[:, 0]
        grid.index_add_(0, flat[inside], (weight * values)[inside])
    return grid.view(box_px, box_px, box_px)
