"""Projection of a deformed voxel map and its exact adjoint, the deformed backprojection.

The forward model is the one the VAE was trained with, applied to a voxel map: every voxel
``x`` of the consensus map is a point of mass ``f(x)`` that the deformation moves to
``x + d(x)`` (mass preserved), the rotation ``A`` takes it to the image plane at
``(A (x + d(x)))_xy``, and the CTF multiplies the image's transform:

    Y(k) = CTF(k) * sum_x f(x) exp(-2 pi i k . (A (x + d(x)))_xy / D).

It is evaluated as a non-uniform FFT: the points are spread onto an ``oversampling`` times
finer image grid with bilinear weights (the transpose of ``torch.nn.functional.grid_sample``,
whose optimised kernels make this several times faster than a cubic B-spline on a coarser
grid), the grid's transform is divided by the kernel's (``sinc^2`` per axis) and cropped
to the image's band. At the default 4x oversampling the kernel's aliasing is below 2% at
Nyquist and the projection of a smooth map matches the exact sum to about 3e-3. With
``d = 0`` this is the central slice of the map's (trigonometric) transform, so an
undeformed map projects as the Fourier-slice theorem says. The adjoint runs the same steps
backwards (CTF, kernel, inverse transform, bilinear *gather* at the same points); it brings
an image back to the consensus frame through the FORWARD field at consensus positions,
with no inverse deformation and no
Jacobian (the mass-preserving push has none in its adjoint). The data inner product is the
full (Hermitian) one over the kept frequencies, i.e. the rfft samples with
:func:`~dynamight_core.geometry.fourier.hermitian_weights_2d`.

The field is evaluated on a coarse control grid and interpolated trilinearly to the voxels
(``../shared/notes/performance.md`` section 4: a 16^3 grid reproduces a smooth field to
1e-3 px). Only voxels inside a sphere (the reconstruction's support) are points.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as functional

from dynamight_core.geometry.fourier import centre_phase_2d
from dynamight_core.reconstruct.insertion import inserted_frequencies

# (B, L) latents and (P, 3) points in box units -> (B, P, 3) displacements in box units
DisplacementField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SupportGrid:
    """The voxels of a `(D, D, D)` map inside a sphere about the box centre.

    Attributes
    ----------
    box_px
        Box size D.
    radius_px
        Radius of the sphere (px).
    index
        `(V,)` flat indices of the voxels in a `(D, D, D)` array in (z, y, x) order.
    positions_px
        `(V, 3)` their (x, y, z) positions relative to the box centre ``D//2`` (px).
    """

    box_px: int
    radius_px: float
    index: torch.Tensor
    positions_px: torch.Tensor

    @classmethod
    def sphere(
        cls, box_px: int, radius_px: float, device: torch.device | None = None
    ) -> SupportGrid:
        """The voxels within ``radius_px`` of the centre."""
        axis = torch.arange(box_px, device=device, dtype=torch.float32) - box_px // 2
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        inside = (x**2 + y**2 + z**2 <= radius_px**2).flatten()
        positions = torch.stack([x.flatten(), y.flatten(), z.flatten()], dim=1)
        return cls(box_px, float(radius_px), torch.nonzero(inside).flatten(), positions[inside])

    @property
    def n_voxels(self) -> int:
        """Number V of voxels."""
        return int(self.index.shape[0])

    def to_volume(self, values: torch.Tensor) -> torch.Tensor:
        """`(D, D, D)` map holding `(V,)` ``values`` on the support, zero elsewhere."""
        volume = values.new_zeros(self.box_px**3)
        volume[self.index] = values
        return volume.view(self.box_px, self.box_px, self.box_px)

    def from_volume(self, volume: torch.Tensor) -> torch.Tensor:
        """`(V,)` values of a `(D, D, D)` map on the support."""
        return volume.reshape(-1)[self.index]


class ControlGrid:
    """A displacement field evaluated on ``n`` nodes per axis and interpolated to the voxels.

    The nodes span the box from ``-D/2`` to ``D/2`` px (both included), so the spacing is
    ``D / (n - 1)`` px.

    Parameters
    ----------
    box_px
        Box size D.
    n_nodes
        Nodes per axis (at least 2).
    device
        Where the nodes live.
    """

    def __init__(self, box_px: int, n_nodes: int, device: torch.device | None = None) -> None:
        if n_nodes < 2:
            raise ValueError(f"a control grid needs at least 2 nodes per axis, got {n_nodes}")
        self.box_px = box_px
        self.n_nodes = n_nodes
        axis = torch.linspace(-0.5, 0.5, n_nodes, device=device)
        z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
        # (n^3, 3) node positions (x, y, z) in box units, in (z, y, x) array order
        self.nodes = torch.stack([x.flatten(), y.flatten(), z.flatten()], dim=1)

    def interpolation(self, positions_px: torch.Tensor) -> torch.Tensor:
        """`(V, n^3)` sparse (CSR) trilinear weights of the nodes at `(V, 3)` positions (px).

        Positions beyond the nodes take the nearest border node's weights.
        """
        n = self.n_nodes
        where = (positions_px / self.box_px + 0.5) * (n - 1)  # node units, (x, y, z)
        where = where.clamp(0.0, n - 1.0)
        floor = torch.floor(where).clamp_(max=n - 2)
        frac = where - floor
        base = floor.long()
        columns, weights = [], []
        for corner in range(8):
            step = torch.tensor(
                [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1], device=positions_px.device
            )
            index = base + step
            columns.append((index[:, 2] * n + index[:, 1]) * n + index[:, 0])
            weights.append(torch.where(step.bool(), frac, 1.0 - frac).prod(dim=1))
        n_points = positions_px.shape[0]
        rows = torch.arange(n_points + 1, device=positions_px.device) * 8
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                rows,
                torch.stack(columns, dim=1).flatten(),
                torch.stack(weights, dim=1).flatten(),
                size=(n_points, n**3),
                check_invariants=False,
            )

    def displacements_px(
        self, field: DisplacementField, latents: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Interpolated displacements at voxel positions.

        Parameters
        ----------
        field
            The deformation: (latents, points in box units) -> displacements (box units).
        latents
            `(B, L)` latent points.
        weights
            `(V, n^3)` from :meth:`interpolation` for the voxels.

        Returns
        -------
        torch.Tensor
            `(B, V, 3)` displacements (px), trilinear in the node values.
        """
        batch = latents.shape[0]
        node_values = field(latents, self.nodes) * self.box_px  # (B, n^3, 3) px
        columns = node_values.transpose(0, 1).reshape(self.n_nodes**3, batch * 3)
        return (weights @ columns).view(-1, batch, 3).transpose(0, 1)


class DeformedProjector:
    """Deformed projection of a map on a :class:`SupportGrid` and its exact adjoint.

    Parameters
    ----------
    support
        The map's voxels.
    oversampling
        Factor of the fine image grid the points are spread onto (2: kernel attenuation
        ``sinc^4(1/4) = 0.66`` per axis at Nyquist, aliasing about 1% of it).
    """

    def __init__(self, support: SupportGrid, oversampling: int = 4) -> None:
        box = support.box_px
        device = support.positions_px.device
        self.support = support
        self.box_px = box
        self.fine_px = oversampling * box
        self.oversampling = oversampling
        _, self.keep = inserted_frequencies(box, device)
        rows = torch.fft.fftfreq(box, d=1.0 / box, device=device).round().long()
        self.fine_rows = torch.remainder(rows, self.fine_px)  # (D,) rows of the fine rfft
        ky = rows.float()[:, None] / self.fine_px
        kx = torch.arange(box // 2 + 1, device=device).float()[None, :] / self.fine_px
        kernel = torch.sinc(ky) ** 2 * torch.sinc(kx) ** 2  # the bilinear kernel's transform
        # (D, D//2+1) centring, kernel correction and band limit in one real factor
        self.band_factor = torch.where(self.keep, centre_phase_2d(box, device) / kernel, 0.0)

    def image_coords(
        self, rotations: torch.Tensor, displacements_px: torch.Tensor | None
    ) -> torch.Tensor:
        """`(B, V, 2)` positions of the deformed, rotated voxels on the fine grid.

        In ``grid_sample``'s normalised units (-1 and 1 at the first and last fine pixel).

        Parameters
        ----------
        rotations
            `(B, 3, 3)` RELION matrices ``A``.
        displacements_px
            `(B, V, 3)` displacements (px) of the support voxels, or None for none.
        """
        # fine pixel = M/2 + oversampling * (A r)_xy; grid_sample's units: 2 p / (M - 1) - 1
        unit = 2.0 / (self.fine_px - 1)
        matrices = rotations[:, :2, :].transpose(-1, -2) * (self.oversampling * unit)
        offset = self.fine_px / 2 * unit - 1.0
        points = self.support.positions_px[None]
        if displacements_px is None:
            return torch.matmul(points, matrices) + offset
        return torch.baddbmm(
            torch.full((1, 1, 1), offset, device=points.device),
            points + displacements_px,
            matrices,
        )

    def forward(
        self, values: torch.Tensor, coords: torch.Tensor, ctf: torch.Tensor
    ) -> torch.Tensor:
        """Projected, CTF-modulated images of the map.

        Parameters
        ----------
        values
            `(V,)` map values on the support (mass per voxel).
        coords
            `(B, V, 2)` from :meth:`image_coords`.
        ctf
            `(B, D, D//2+1)` CTFs.

        Returns
        -------
        torch.Tensor
            `(B, D, D//2+1)` complex transforms, phases relative to the box centre (the
            layout of :func:`~dynamight_core.reconstruct.insertion.centred_transform`),
            zero outside the kept frequencies.
        """
        batch, fine_px = coords.shape[0], self.fine_px
        grid = coords.view(batch, 1, -1, 2)
        canvas = coords.new_zeros(batch, 1, fine_px, fine_px, requires_grad=True)
        with torch.enable_grad():  # the spread is the transpose of the bilinear sample
            sampled = functional.grid_sample(canvas, grid, mode="bilinear", align_corners=True)
            (fine,) = torch.autograd.grad(
                sampled, canvas, grad_outputs=values.to(coords.dtype).expand(batch, 1, 1, -1)
            )
        fine = fine[:, 0]  # (B, M, M)
        spectrum = torch.fft.rfft2(fine)[:, self.fine_rows, : self.box_px // 2 + 1]
        return spectrum * (self.band_factor * ctf)

    def adjoint(
        self, spectra: torch.Tensor, coords: torch.Tensor, ctf: torch.Tensor
    ) -> torch.Tensor:
        """Deformed backprojection: the adjoint of :meth:`forward`, summed over the batch.

        Parameters
        ----------
        spectra
            `(B, D, D//2+1)` complex image transforms (centred layout).
        coords
            `(B, V, 2)` from :meth:`image_coords`.
        ctf
            `(B, D, D//2+1)` CTFs.

        Returns
        -------
        torch.Tensor
            `(V,)` sum over the batch of each image, CTF-weighted and brought back to the
            consensus frame.
        """
        batch, fine = spectra.shape[0], self.fine_px
        weighted = spectra * (self.band_factor * ctf)
        padded = weighted.new_zeros(batch, fine, fine // 2 + 1)
        padded[:, self.fine_rows, : self.box_px // 2 + 1] = weighted
        images = torch.fft.irfft2(padded, s=(fine, fine)) * float(fine * fine)
        grid = coords.view(batch, 1, -1, 2)
        sampled = functional.grid_sample(
            images[:, None].to(coords.dtype), grid, mode="bilinear", align_corners=True
        )
        return sampled[:, 0, 0].sum(0)
