"""The undeformed normal operator's kernel and backprojection on a twice-padded box.

For particles with CTFs ``CTF_i`` and rotations ``A_i`` (no deformation), the normal operator
of the projector in :mod:`.deformed_projector` is a convolution with

    h(x) = sum_i sum_k CTF_i(k)^2 exp(2 pi i (A_i^T k) . x / D),

and the backprojection of images ``Y_i`` is

    b(x) = sum_i sum_k CTF_i(k) Y_i(k) exp(2 pi i (A_i^T k) . x / D),

both summed over the kept image frequencies and their Friedel mates. A map of the box D
(``|x| <= D/2``) needs ``h`` at offsets ``-D <= x < D`` on every axis, the ``G = 2 D`` box;
there, the convolution is a product of transforms on the ``G`` grid. Both are computed as
type-1 non-uniform FFTs: the samples ``A_i^T k`` are spread trilinearly onto a periodic
grid of ``L = OVERSAMPLING * G`` nodes per axis, transformed, read at the ``G`` offsets and
divided by the kernel's transform (``sinc^2`` per axis). Both are then multiplied by the
triangle window ``prod(1 - |x_a| / D)``, whose transform is positive (Fejer), so that the
transform of ``h`` is too; the ratio of the two transforms is the filtered backprojection,
as RELION's ratio of inserted sums with a common kernel. Where the window is large the
kernel's aliasing is small (2% at ``|x| = D/2``), and ``h`` times the window matches the
exact sum to about 5e-3 (``tests/test_deformed_reconstruction.py``).
"""

from __future__ import annotations

import torch

from dynamight_core.geometry.fourier import hermitian_weights_2d
from dynamight_core.reconstruct.insertion import inserted_frequencies

PAD = 2
OVERSAMPLING = 2


def _full_from_rfft(spectrum: torch.Tensor, half: int) -> torch.Tensor:
    """Values of a real grid's transform at offsets ``-half .. half-1`` on every axis.

    Parameters
    ----------
    spectrum
        `(L, L, L//2+1)` ``torch.fft.rfftn`` of a real `(L, L, L)` grid.
    half
        D: the window is `(2 D)^3`, in (z, y, x) order, offset ``-D`` at index 0.
    """
    size = spectrum.shape[0]
    offsets = torch.remainder(torch.arange(-half, half, device=spectrum.device), size)
    mates = torch.remainder(-offsets, size)
    positive = spectrum[offsets][:, offsets][:, :, :half]  # x = 0 .. D-1
    negative = spectrum[mates][:, mates][:, :, 1 : half + 1].conj()  # x = -1 .. -D
    return torch.cat([torch.flip(negative, dims=(2,)), positive], dim=2)


class RigidAccumulator:
    """Running ``h`` and ``b`` (module docstring) of a set of particles.

    The spread grid (`(2, L, L, L)`) is folded into the ``G`` box by :meth:`flush`; only the
    folded results, :attr:`transfer` (the transform of ``h``, `(G, G, G//2+1)`) and
    :attr:`backprojection` (``b`` on the ``G`` box, `(G, G, G)`, box centre at ``D``), are kept.

    Parameters
    ----------
    box_px
        Box size D of the images and the map.
    device
        Where the grids live.
    """

    def __init__(self, box_px: int, device: torch.device) -> None:
        self.box_px = box_px
        self.size = PAD * box_px
        self.fine = OVERSAMPLING * self.size
        self.device = device
        self.frequencies, self.keep = inserted_frequencies(box_px, device)
        # the kx = 0 column holds both ky and -ky: half weight, as each gets its mate again
        self.column_weight = (0.5 * hermitian_weights_2d(box_px, device)).expand(box_px, -1)[
            self.keep
        ]
        self.grid = torch.zeros(2, self.fine, self.fine, self.fine, device=device)
        self.transfer = torch.zeros(self.size, self.size, self.size // 2 + 1, device=device)
        self.backprojection = torch.zeros(self.size, self.size, self.size, device=device)

    def insert(
        self, ctf: torch.Tensor, rotations: torch.Tensor, spectra: torch.Tensor | None = None
    ) -> None:
        """Add particles.

        Parameters
        ----------
        ctf
            `(B, D, D//2+1)` CTFs.
        rotations
            `(B, 3, 3)` RELION matrices ``A``.
        spectra
            `(B, D, D//2+1)` centred image transforms, or None to add only to ``h``.
        """
        k = self.frequencies.to(rotations.dtype)
        points = (
            k[None, :, 0, None] * rotations[:, None, 0, :]
            + k[None, :, 1, None] * rotations[:, None, 1, :]
        ) * (self.fine / self.box_px)  # (B, P, 3) nodes of the fine grid
        weight = (ctf * ctf)[:, self.keep] * self.column_weight
        data = torch.zeros_like(weight) if spectra is None else (ctf * spectra)[:, self.keep]
        data = data * self.column_weight
        # a sample c at q and its mate conj(c) at -q: the real part of b needs
        # (Re c + Im c) at q and (Re c - Im c) at -q in one real grid (see flush)
        at_q = torch.stack([weight, data.real + data.imag], dim=-1)
        at_mate = torch.stack([weight, data.real - data.imag], dim=-1)
        nodes = torch.cat([points, -points], dim=1).reshape(-1, 3)
        values = torch.cat([at_q, at_mate], dim=1).reshape(-1, 2)
        self._splat(nodes, values.to(self.grid.dtype))

    def _splat(self, nodes: torch.Tensor, values: torch.Tensor) -> None:
        """Trilinear accumulation of `(M, 2)` values at `(M, 3)` (x, y, z) nodes, periodic."""
        fine = self.fine
        floor = torch.floor(nodes)
        frac = nodes - floor
        base = floor.long()
        flat = self.grid.view(2, -1)
        for corner in range(8):
            step = [corner & 1, (corner >> 1) & 1, (corner >> 2) & 1]
            weight = torch.ones_like(frac[:, 0])
            index = torch.zeros_like(base[:, 0])
            for axis in (2, 1, 0):  # array order (z, y, x)
                weight = weight * (frac[:, axis] if step[axis] else 1.0 - frac[:, axis])
                index = index * fine + torch.remainder(base[:, axis] + step[axis], fine)
            for channel in (0, 1):
                flat[channel].index_add_(0, index, values[:, channel] * weight)

    def _window(self) -> torch.Tensor:
        """`(G, G, G)` triangle window ``prod (1 - |x_a| / D)`` centred at index D."""
        axis = 1.0 - torch.arange(-self.box_px, self.box_px, device=self.device).abs() / self.box_px
        return axis[:, None, None] * axis[None, :, None] * axis[None, None, :]

    def flush(self) -> None:
        """Fold the spread samples into :attr:`transfer` and :attr:`backprojection`."""
        if not bool(self.grid.any()):
            return
        half = self.box_px
        axis = torch.arange(-half, half, device=self.device) / self.fine
        profile = torch.sinc(axis) ** 2  # the trilinear kernel's transform
        kernel = profile[:, None, None] * profile[None, :, None] * profile[None, None, :]
        h_part = _full_from_rfft(torch.fft.rfftn(self.grid[0]), half)
        b_part = _full_from_rfft(torch.fft.rfftn(self.grid[1]), half)
        # a window whose transform is positive (Fejer), so that the transform of h is too
        window = self._window()
        h = h_part.real * (window / kernel)
        # rfftn uses exp(-i...): the even part gives sum 2 Re(c) cos, the odd part
        # -2 Im(c) sin, together the real b
        self.backprojection += (b_part.real + b_part.imag) * (window / kernel)
        h = torch.roll(h, shifts=(-half,) * 3, dims=(0, 1, 2))  # origin at index 0
        self.transfer += torch.fft.rfftn(h).real
        self.grid.zero_()
