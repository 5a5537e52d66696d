"""Fourier-slice insertion of CTF-weighted particle images into a padded 3D transform.

Each image is centred (phase shift by its origin), zero-padded to ``pad * D``, transformed,
multiplied by its CTF, and its central slice is placed at ``A^T (k_x, k_y, 0)`` with
trilinear weights. The numerator (CTF times data) and the denominator (CTF squared) are
accumulated together; :meth:`FourierAccumulator.reconstruct` divides them with a Wiener
term, transforms back, crops and corrects for the trilinear kernel (gridding correction).
Transforms are *centred* (phases relative to the box centre) so that slices can be
interpolated; the checkerboard factors convert from and to the ``torch.fft`` layout.
"""

from __future__ import annotations

import torch

from dynamight_core.geometry.grids import centre_phase_3d


def _centre_phase_2d(size: int, device: torch.device) -> torch.Tensor:
    """`(G, G//2+1)` checkerboard ``(-1)^(iy+ix)``."""
    idx_y = torch.arange(size, device=device)
    idx_x = torch.arange(size // 2 + 1, device=device)
    return 1.0 - 2.0 * ((idx_y[:, None] + idx_x[None, :]) % 2).float()


def padded_centred_transform(
    images: torch.Tensor, shifts_px: torch.Tensor, pad: int
) -> torch.Tensor:
    """Centred rfft of zero-padded images, with each particle moved to the box centre.

    Parameters
    ----------
    images
        `(B, D, D)` real images, box centre at ``D//2``.
    shifts_px
        `(B, 2)` (x, y) position of each particle centre relative to the box centre (px).
    pad
        Padding factor; the output grid is ``G = pad * D``.

    Returns
    -------
    torch.Tensor
        `(B, G, G//2+1)` complex transform with phases relative to the box centre.
    """
    batch, box, _ = images.shape
    size = pad * box
    start = (size - box) // 2
    padded = torch.zeros(batch, size, size, dtype=images.dtype, device=images.device)
    padded[:, start : start + box, start : start + box] = images
    spectrum = torch.fft.rfft2(padded) * _centre_phase_2d(size, images.device)
    ky = torch.fft.fftfreq(size, device=images.device)[:, None]
    kx = torch.fft.rfftfreq(size, device=images.device)[None, :]
    phase = 2.0 * torch.pi * (kx * shifts_px[:, 0, None, None] + ky * shifts_px[:, 1, None, None])
    return spectrum * torch.polar(torch.ones_like(phase), phase)


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
        self._slice_coords, self._slice_keep = self._slice_frequencies()

    def _slice_frequencies(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Frequencies (index units) of the rfft half-plane inside the Nyquist disc."""
        size = self.size
        jy = torch.fft.fftfreq(size, d=1.0 / size, device=self.device)
        jx = torch.arange(size // 2 + 1, device=self.device, dtype=torch.float32)
        grid_y, grid_x = torch.meshgrid(jy, jx, indexing="ij")
        keep = (grid_x**2 + grid_y**2) <= (size // 2 - 1) ** 2
        coords = torch.stack([grid_x, grid_y], dim=-1)[keep]  # (P, 2)
        return coords, keep

    def insert(self, slices_ft: torch.Tensor, ctf: torch.Tensor, rotations: torch.Tensor) -> None:
        """Add CTF-weighted central slices.

        Parameters
        ----------
        slices_ft
            `(B, G, G//2+1)` centred transforms from :func:`padded_centred_transform`.
        ctf
            `(B, G, G//2+1)` CTF on the padded grid.
        rotations
            `(B, 3, 3)` RELION matrices ``A``.
        """
        keep = self._slice_keep
        data = (slices_ft * ctf)[:, keep]  # (B, P)
        weight = (ctf * ctf)[:, keep]
        # 3D frequency of 2D frequency k is A^T (kx, ky, 0) = kx * A[0] + ky * A[1]
        coords = self._slice_coords.to(rotations.dtype)
        points = (
            coords[None, :, 0, None] * rotations[:, None, 0, :]
            + coords[None, :, 1, None] * rotations[:, None, 1, :]
        )
        flip = points[..., 0] < 0
        points = torch.where(flip[..., None], -points, points)
        data = torch.where(flip, data.conj(), data)
        values = torch.stack([data.real, data.imag, weight], dim=-1)  # (B, P, 3)
        self._splat(points.reshape(-1, 3), values.reshape(-1, 3))
        self.n_images += slices_ft.shape[0]

    def _splat(self, points: torch.Tensor, values: torch.Tensor) -> None:
        """Trilinear accumulation of `(M, 3)` values at `(M, 3)` (x, y, z) index coordinates."""
        size, half = self.size, self.size // 2 + 1
        floor = torch.floor(points)
        frac = points - floor
        base = floor.long()
        for corner in range(8):
            dx, dy, dz = corner & 1, (corner >> 1) & 1, (corner >> 2) & 1
            wx = frac[:, 0] if dx else 1.0 - frac[:, 0]
            wy = frac[:, 1] if dy else 1.0 - frac[:, 1]
            wz = frac[:, 2] if dz else 1.0 - frac[:, 2]
            ix = (base[:, 0] + dx).clamp_(max=half - 1)
            iy = torch.remainder(base[:, 1] + dy, size)
            iz = torch.remainder(base[:, 2] + dz, size)
            index = (iz * size + iy) * half + ix
            self.sums.index_add_(0, index, values * (wx * wy * wz)[:, None])

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
        """Wiener-filtered map from the sums.

        Parameters
        ----------
        regulariser
            `(D//2+1,)` term added to the CTF² sum in each shell (``1/tau^2`` in the units
            of the sums); shells beyond Nyquist are set to zero.

        Returns
        -------
        torch.Tensor
            `(D, D, D)` float32 map indexed (z, y, x), centre at ``D//2``.
        """
        numerator, weight = self._hermitian_sums()
        radius = self.shell_radius()
        shells = torch.round(radius).long().clamp_(max=self.box_px // 2)
        denominator = weight + regulariser.to(weight)[shells]
        volume_ft = torch.where(radius <= self.box_px / 2, numerator / denominator, 0.0)
        volume_ft = volume_ft * centre_phase_3d(self.size, self.device)
        padded = torch.fft.irfftn(volume_ft, s=(self.size,) * 3)
        start = (self.size - self.box_px) // 2
        volume = padded[
            start : start + self.box_px, start : start + self.box_px, start : start + self.box_px
        ]
        return volume / self._gridding_kernel()

    def _gridding_kernel(self) -> torch.Tensor:
        """Real-space transform of the trilinear interpolation kernel on the padded grid."""
        axis = (torch.arange(self.box_px, device=self.device) - self.box_px // 2) / self.size
        profile = torch.sinc(axis) ** 2
        return profile[:, None, None] * profile[None, :, None] * profile[None, None, :]
