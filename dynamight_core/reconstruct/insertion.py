"""Fourier-slice insertion of CTF-weighted particle images into a padded 3D transform.

Each image is transformed at its own size D, centred (phase shift by its origin) and
multiplied by its CTF on that same grid, where every sample holds the frequency the CTF
is computed for. Sample ``j`` (index units of the D grid) is placed at ``pad * A^T (j_x,
j_y, 0)`` on the ``G = pad * D`` grid with trilinear weights, as RELION's backprojector
does. Zero-padding the image before its transform instead would put sinc-interpolated
values on the half-integer frequencies and multiply them by the CTF of a frequency whose
value they do not hold; beyond the shell where the CTF turns by more than pi per Fourier
pixel those samples are wrong.

Samples are kept to radius ``D/2 + 1/2`` (so the voxels of the Nyquist shell get their
full trilinear weight), without the Nyquist row and column of the image transform, which
hold the sum of two frequencies. Splat corners beyond the padded grid's Nyquist are
dropped, not wrapped onto the far side. The numerator (CTF times data) and the
denominator (CTF squared) are accumulated together; :meth:`FourierAccumulator.reconstruct`
divides them with a Wiener term, transforms back, crops and corrects for the trilinear
kernel (gridding correction). Transforms are *centred* (phases relative to the box centre)
so that slices can be interpolated; the checkerboard factors convert from and to the
``torch.fft`` layout.
"""

from __future__ import annotations

import torch

from dynamight_core.geometry.fourier import (
    centre_phase_2d,
    centre_phase_3d,
    shell_index_3d,
    shift_phase_2d,
)

# image samples are inserted to radius D/2 + SLICE_MARGIN_PX (px of the D grid), and the map
# keeps the frequencies to radius D/2 + MAP_MARGIN_PX: the whole Nyquist shell of a
# nearest-shell FSC, each of its voxels with samples on both sides
SLICE_MARGIN_PX = 0.5
MAP_MARGIN_PX = 0.5


def centred_transform(images_ft: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
    """Centred image transforms at their own size, with each particle moved to the box centre.

    Parameters
    ----------
    images_ft
        `(B, D, D//2+1)` complex ``torch.fft.rfft2`` of the images (box centre at ``D//2``,
        D even), as :meth:`~dynamight_core.data.batches.BatchReader.read` gives them.
    shifts_px
        `(B, 2)` (x, y) position of each particle centre relative to the box centre (px).

    Returns
    -------
    torch.Tensor
        `(B, D, D//2+1)` complex transform with phases relative to the box centre, on the
        grid of :func:`~dynamight_core.physics.ctf.compute_ctf` for the same box.
    """
    box = images_ft.shape[-2]
    spectrum = images_ft * centre_phase_2d(box, images_ft.device)
    return spectrum * shift_phase_2d(box, shifts_px)


def scale_shells(volume: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Multiply each Fourier shell of a map by a factor.

    Parameters
    ----------
    volume
        `(D, D, D)` real map.
    gain
        `(D//2+1,)` factor per shell (nearest shell ``round(|k| D)``); shells beyond
        Nyquist use the last one.
    """
    box = volume.shape[-1]
    shells = shell_index_3d(box, volume.device).clamp_(max=box // 2)
    spectrum = torch.fft.rfftn(volume) * gain.to(volume)[shells]
    return torch.fft.irfftn(spectrum, s=volume.shape)


def inserted_frequencies(
    box_px: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image frequencies (index units of the D grid) that are inserted.

    Returns
    -------
    tuple of torch.Tensor
        `(P, 2)` (j_x, j_y) of the kept samples and the `(D, D//2+1)` boolean mask that
        selects them from an rfft: radius at most ``D/2 + SLICE_MARGIN_PX``, without the
        Nyquist row and column.
    """
    jy = torch.fft.fftfreq(box_px, d=1.0 / box_px, device=device)
    jx = torch.arange(box_px // 2 + 1, device=device, dtype=torch.float32)
    grid_y, grid_x = torch.meshgrid(jy, jx, indexing="ij")
    inside = (grid_x**2 + grid_y**2) <= (box_px / 2 + SLICE_MARGIN_PX) ** 2
    keep = inside & (grid_y.abs() < box_px // 2) & (grid_x < box_px // 2)
    coords = torch.stack([grid_x, grid_y], dim=-1)[keep]  # (P, 2)
    return coords, keep


class FourierAccumulator:
    """Running sums of CTF-weighted slices on a padded 3D rfft grid.

    Parameters
    ----------
    box_px
        Box size D of the images and of the output map.
    pad
        Padding factor of the Fourier grid (2 is RELION's default).
    device
        Where the sums live.
    """

    def __init__(self, box_px: int, pad: int = 2, device: torch.device | None = None) -> None:
        self.box_px = box_px
        self.pad = pad
        self.size = pad * box_px
        self.device = device or torch.device("cpu")
        n_voxels = self.size * self.size * (self.size // 2 + 1)
        # columns: real part of sum(CTF * data), imaginary part, sum(CTF^2)
        self.sums = torch.zeros(n_voxels, 3, dtype=torch.float32, device=self.device)
        self.n_images = 0
        self._slice_coords, self._slice_keep = inserted_frequencies(box_px, self.device)

    def insert(self, slices_ft: torch.Tensor, ctf: torch.Tensor, rotations: torch.Tensor) -> None:
        """Add CTF-weighted central slices.

        Parameters
        ----------
        slices_ft
            `(B, D, D//2+1)` centred transforms from :func:`centred_transform`.
        ctf
            `(B, D, D//2+1)` CTF on the same (unpadded) grid.
        rotations
            `(B, 3, 3)` RELION matrices ``A``.
        """
        keep = self._slice_keep
        data = (slices_ft * ctf)[:, keep]  # (B, P)
        weight = (ctf * ctf)[:, keep]
        # 3D frequency of 2D frequency j is A^T (jx, jy, 0) = jx * A[0] + jy * A[1], and the
        # padded grid samples it at pad times that index
        coords = self._slice_coords.to(rotations.dtype) * self.pad
        points = (
            coords[None, :, 0, None] * rotations[:, None, 0, :]
            + coords[None, :, 1, None] * rotations[:, None, 1, :]
        )
        flip = points[..., 0] < 0
        points = torch.where(flip[..., None], -points, points)
        data = torch.where(flip, data.conj(), data)
        values = torch.stack([data.real, data.imag, weight], dim=-1)  # (B, P, 3)
        self._splat(points.reshape(-1, 3), values.reshape(-1, 3).to(self.sums.dtype))
        self.n_images += slices_ft.shape[0]

    def _splat(self, points: torch.Tensor, values: torch.Tensor) -> None:
        """Trilinear accumulation of `(M, 3)` values at `(M, 3)` (x, y, z) index coordinates.

        ``x >= 0``; corners beyond the grid's Nyquist (``x > G/2`` or ``|y|, |z| > G/2``)
        are dropped.
        """
        size, half = self.size, self.size // 2 + 1
        floor = torch.floor(points)
        frac = points - floor
        base = floor.long()
        for corner in range(8):
            dx, dy, dz = corner & 1, (corner >> 1) & 1, (corner >> 2) & 1
            wx = frac[:, 0] if dx else 1.0 - frac[:, 0]
            wy = frac[:, 1] if dy else 1.0 - frac[:, 1]
            wz = frac[:, 2] if dz else 1.0 - frac[:, 2]
            ix, iy, iz = base[:, 0] + dx, base[:, 1] + dy, base[:, 2] + dz
            inside = (ix < half) & (iy.abs() <= size // 2) & (iz.abs() <= size // 2)
            index = (torch.remainder(iz, size) * size + torch.remainder(iy, size)) * half
            index = index + ix.clamp(max=half - 1)
            weight = torch.where(inside, wx * wy * wz, 0.0)
            self.sums.index_add_(0, index, values * weight[:, None])

    def state(self) -> dict[str, torch.Tensor | int]:
        """The sums and image count, for a checkpoint."""
        return {"sums": self.sums.cpu(), "n_images": self.n_images}

    def load_state(self, state: dict[str, torch.Tensor | int]) -> None:
        """Restore sums saved by :meth:`state`."""
        sums = state["sums"]
        if not isinstance(sums, torch.Tensor) or sums.shape != self.sums.shape:
            raise ValueError("checkpoint sums do not fit this accumulator's grid")
        self.sums = sums.to(self.device)
        self.n_images = int(state["n_images"])

    def merged(self, other: FourierAccumulator) -> FourierAccumulator:
        """A new accumulator holding the sums of both."""
        total = FourierAccumulator(self.box_px, self.pad, self.device)
        total.sums = self.sums + other.sums
        total.n_images = self.n_images + other.n_images
        return total

    def _hermitian_sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Numerator (complex) and denominator with the kx = 0 plane made Hermitian."""
        size, half = self.size, self.size // 2 + 1
        sums = self.sums.view(size, size, half, 3).clone()
        plane = sums[:, :, 0, :]
        mirror = torch.roll(torch.flip(plane, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))
        mirror = mirror * torch.tensor([1.0, -1.0, 1.0], device=sums.device)
        sums[:, :, 0, :] = plane + mirror
        numerator = torch.complex(sums[..., 0], sums[..., 1])
        return numerator, sums[..., 2]

    def shell_radius(self) -> torch.Tensor:
        """`(G, G, G//2+1)` radius of every voxel in units of the *unpadded* box's shells."""
        jz = torch.fft.fftfreq(self.size, d=1.0 / self.size, device=self.device)
        jx = torch.arange(self.size // 2 + 1, device=self.device, dtype=torch.float32)
        radius = torch.sqrt(jz[:, None, None] ** 2 + jz[None, :, None] ** 2 + jx**2)
        return radius / self.pad

    def mean_weight_per_shell(self) -> torch.Tensor:
        """`(D//2+1,)` mean CTF² sum per shell (shells of the unpadded box)."""
        _, weight = self._hermitian_sums()
        shells = torch.round(self.shell_radius()).long().clamp_(max=self.box_px // 2 + 1)
        count = torch.bincount(shells.flatten(), minlength=self.box_px // 2 + 2).float()
        total = torch.bincount(
            shells.flatten(), weights=weight.flatten().double(), minlength=self.box_px // 2 + 2
        ).float()
        return (total / count.clamp(min=1))[: self.box_px // 2 + 1]

    def reconstruct(self, regulariser: torch.Tensor) -> torch.Tensor:
        """Wiener-filtered map from the sums (:meth:`reconstruct_parts`, then the gain).

        Parameters
        ----------
        regulariser
            `(D//2+1,)` term added to the CTF² sum in each shell.

        Returns
        -------
        torch.Tensor
            `(D, D, D)` float32 map indexed (z, y, x), centre at ``D//2``.
        """
        return scale_shells(*self.reconstruct_parts(regulariser))

    def reconstruct_parts(self, regulariser: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The map before its per-shell gain, and that gain.

        The Wiener term is applied in two parts. In each voxel of the padded grid the CTF²
        sum gets ``min(regulariser, mean CTF² sum of the shell)`` added; the rest of the
        filter, the ratio of the shell's mean gains with the full and the capped term, is
        applied per shell after cropping, on the map's own grid. A term that grows by
        orders of magnitude over a few shells (where the FSC falls) would otherwise, once
        the padded map is cropped (a convolution with a sinc in Fourier space), leak the
        strong shells' content into the weak ones and bury their signal.

        Parameters
        ----------
        regulariser
            `(D//2+1,)` term added to the CTF² sum in each shell (``1/tau^2`` in the units
            of the sums); frequencies beyond ``D/2 + MAP_MARGIN_PX`` are set to zero.

        Returns
        -------
        tuple of torch.Tensor
            `(D, D, D)` float32 map indexed (z, y, x), centre at ``D//2``, and the
            `(D//2+1,)` gain per shell for :func:`scale_shells`. A real-space mask must be
            applied before the gain, not after: it too mixes neighbouring shells.
        """
        numerator, weight = self._hermitian_sums()
        radius = self.shell_radius()
        shells = torch.round(radius).long().clamp_(max=self.box_px // 2)
        regulariser = regulariser.to(weight)
        mean_weight = self.mean_weight_per_shell().to(weight)
        in_voxel = torch.minimum(regulariser, mean_weight)
        denominator = weight + in_voxel[shells]
        keep = radius <= self.box_px / 2 + MAP_MARGIN_PX
        volume_ft = torch.where(keep, numerator / denominator, 0.0)
        volume_ft = volume_ft * centre_phase_3d(self.size, self.device)
        padded = torch.fft.irfftn(volume_ft, s=(self.size,) * 3)
        start = (self.size - self.box_px) // 2
        volume = padded[
            start : start + self.box_px, start : start + self.box_px, start : start + self.box_px
        ]
        volume = volume / self._gridding_kernel()
        gain = (mean_weight + in_voxel) / (mean_weight + regulariser).clamp(min=1e-30)
        return volume, gain

    def _gridding_kernel(self) -> torch.Tensor:
        """Real-space transform of the trilinear interpolation kernel on the padded grid."""
        axis = (torch.arange(self.box_px, device=self.device) - self.box_px // 2) / self.size
        profile = torch.sinc(axis) ** 2
        return profile[:, None, None] * profile[None, :, None] * profile[None, None, :]
