"""Deformed reconstruction: the projector and its adjoint, the kernel, and a known motion.

Images here come from the Gaussian renderer (``physics.render``), not from the projector
under test; each particle's molecule is moved by a known translation, the simplest motion
whose field is exactly representable on any control grid.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from dynamight_core.data.batches import ParticleBatch
from dynamight_core.geometry.fourier import hermitian_weights_2d
from dynamight_core.geometry.rotations import euler_to_matrix
from dynamight_core.metrics.fsc import fsc
from dynamight_core.physics.ctf import CtfParameters, compute_ctf
from dynamight_core.physics.render import render_projections, render_volume
from dynamight_core.reconstruct.deformed import DeformedGeometry, backproject
from dynamight_core.reconstruct.deformed_filter import filtered_backprojection
from dynamight_core.reconstruct.deformed_projector import (
    ControlGrid,
    DeformedProjector,
    SupportGrid,
)
from dynamight_core.reconstruct.deformed_solve import normal_pass, refine
from dynamight_core.reconstruct.insertion import inserted_frequencies
from dynamight_core.reconstruct.rigid_kernel import RigidAccumulator

BOX = 32
PIXEL_A = 2.0


def _rotations(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    euler = torch.rand(n, 3, generator=generator) * torch.tensor([360.0, 180.0, 360.0])
    euler[:, 1] = torch.rad2deg(torch.acos(1 - 2 * torch.rand(n, generator=generator)))
    return euler_to_matrix(euler)


def _ctf(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)

    def const(value: float) -> torch.Tensor:
        return torch.full((n,), value)

    defocus = 8000.0 + 8000.0 * torch.rand(n, generator=generator)
    params = CtfParameters(
        defocus,
        defocus - 200.0,
        torch.rand(n, generator=generator) * 180.0,
        const(300.0),
        const(2.7),
        const(0.1),
        const(0.0),
        const(0.0),
        const(1.0),
    )
    return compute_ctf(params, BOX, PIXEL_A)


def _blobs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions (Å), masses and widths of a compact random molecule."""
    generator = torch.Generator().manual_seed(seed)
    positions = (torch.rand(40, 3, generator=generator) - 0.5) * 0.45 * BOX * PIXEL_A
    masses = torch.rand(40, 1, generator=generator) + 0.5
    return positions, masses, torch.tensor([1.0 * PIXEL_A])


def test_projection_of_a_deformed_map_is_the_exact_sum() -> None:
    """Each voxel a point at x + d(x): the transform equals the direct sum to 1%."""
    support = SupportGrid.sphere(BOX, 12.0)
    projector = DeformedProjector(support)
    rotations = _rotations(3, 0)
    generator = torch.Generator().manual_seed(1)
    moved = torch.randn(3, support.n_voxels, 3, generator=generator) * 0.5
    positions = support.positions_px
    values = torch.exp(-((positions - torch.tensor([3.0, -2.0, 1.0])) ** 2).sum(1) / 8.0)
    ctf = _ctf(3, 2)
    model = projector.forward(values, projector.image_coords(rotations, moved), ctf)
    plane = torch.matmul((positions[None] + moved).double(), rotations[:, :2, :].mT.double())
    ky = torch.fft.fftfreq(BOX, d=1.0 / BOX).double()[:, None, None]
    kx = torch.arange(BOX // 2 + 1).double()[None, :, None]
    direct = torch.stack(
        [
            (
                values.double()
                * torch.exp(
                    -2j * math.pi * (kx * p[None, None, :, 0] + ky * p[None, None, :, 1]) / BOX
                )
            ).sum(-1)
            for p in plane
        ]
    ) * (ctf * projector.keep)
    error = (model - direct).abs().norm() / direct.abs().norm()
    assert error < 0.01, error
    with pytest.raises(AssertionError):  # the sign of the deformation matters
        flipped = projector.forward(values, projector.image_coords(rotations, -moved), ctf)
        assert (flipped - direct).abs().norm() / direct.abs().norm() < 0.01


def test_backprojection_is_the_adjoint_of_projection() -> None:
    """<A f, y> = <f, A^T y> with the Hermitian inner product of the images."""
    support = SupportGrid.sphere(BOX, 14.0)
    projector = DeformedProjector(support)
    coords = projector.image_coords(_rotations(4, 3), torch.randn(4, support.n_voxels, 3))
    ctf = _ctf(4, 4)
    values = torch.randn(support.n_voxels, dtype=torch.float64)
    images = torch.randn(4, BOX, BOX // 2 + 1, dtype=torch.complex128)
    coords, ctf = coords.double(), ctf.double()
    weights = hermitian_weights_2d(BOX).double()
    left = (weights * (projector.forward(values, coords, ctf).conj() * images).real).sum()
    right = (values * projector.adjoint(images, coords, ctf)).sum()
    assert torch.isclose(left, right, rtol=1e-9)


def test_rigid_kernel_and_backprojection_match_the_exact_sums() -> None:
    """h (the undeformed normal operator's kernel) and b agree with their direct sums.

    The direct sums are float64 over every kept frequency of every particle; h is read back
    by convolving a delta with the accumulated transfer.
    """
    support = SupportGrid.sphere(BOX, BOX / 2 - 1)
    projector = DeformedProjector(support)
    rotations, ctf = _rotations(4, 5), _ctf(4, 6)
    frequencies, keep = inserted_frequencies(BOX)
    column = (0.5 * hermitian_weights_2d(BOX)).expand(BOX, -1)[keep]
    q = frequencies[None, :, 0, None] * rotations[:, None, 0] + (
        frequencies[None, :, 1, None] * rotations[:, None, 1]
    )
    phase = 2 * math.pi * torch.einsum("bpi,vi->bpv", q.double(), support.positions_px.double())
    squared = (ctf**2)[:, keep].double() * column.double()
    kernel = (2 * squared[..., None] * torch.cos(phase / BOX)).sum((0, 1))
    accumulator = RigidAccumulator(BOX, torch.device("cpu"))
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(4, BOX, BOX // 2 + 1, dtype=torch.complex64, generator=generator)
    images = images * keep
    accumulator.insert(ctf, rotations, images)
    accumulator.flush()
    delta = (support.positions_px.abs().sum(1) == 0).float()
    spectrum = torch.fft.rfftn(_padded(delta, support)) * accumulator.transfer
    convolved = torch.fft.irfftn(spectrum, s=(2 * BOX,) * 3)
    # both carry the triangle window prod(1 - |x_a| / D) that keeps H positive
    window = (1 - support.positions_px.abs() / BOX).prod(dim=1).double()
    assert _relative(_window(convolved, support), kernel * window) < 1e-2
    coords = projector.image_coords(rotations, None)
    adjoint = projector.adjoint(images, coords, ctf)
    # white images: the bilinear adjoint's aliasing (under 2% at Nyquist) is what differs
    assert _relative(_window(accumulator.backprojection, support), adjoint * window) < 2e-2


def _padded(values: torch.Tensor, support: SupportGrid) -> torch.Tensor:
    box = support.box_px
    grid = torch.zeros(2 * box, 2 * box, 2 * box)
    grid[box // 2 : box // 2 + box, box // 2 : box // 2 + box, box // 2 : box // 2 + box] = (
        support.to_volume(values)
    )
    return grid


def _window(padded: torch.Tensor, support: SupportGrid) -> torch.Tensor:
    box = support.box_px
    inner = padded[box // 2 : box // 2 + box, box // 2 : box // 2 + box, box // 2 : box // 2 + box]
    return support.from_volume(inner)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_control_grid_interpolates_trilinearly() -> None:
    """A field linear in position is reproduced exactly between the nodes."""
    support = SupportGrid.sphere(BOX, 15.0)
    grid = ControlGrid(BOX, 9)

    def linear(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return latents[:, None, :] * points[None, :, :1] + 0.01 * points[None] @ torch.eye(3)

    latents = torch.tensor([[0.1, -0.2, 0.05]])
    moved = grid.displacements_px(linear, latents, grid.interpolation(support.positions_px))
    expected = linear(latents, support.positions_px / BOX) * BOX
    assert torch.allclose(moved, expected, atol=1e-4)


@dataclass
class _MemoryReader:
    """Particles held in memory, read like :class:`~dynamight_core.data.batches.BatchReader`."""

    spectra: torch.Tensor
    ctf: torch.Tensor
    rotations: torch.Tensor

    @property
    def particle_set(self) -> _MemoryReader:
        return self

    pixel_size_a = PIXEL_A

    def read(self, rows: np.ndarray) -> ParticleBatch:
        index = torch.as_tensor(rows)
        return ParticleBatch(
            rows,
            self.spectra[index],
            self.ctf[index],
            self.rotations[index],
            torch.zeros(len(rows), 2),
        )

    def geometry(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(rows)
        return self.ctf[index], self.rotations[index]


def _translated_particles(
    n: int, max_shift_a: float, seed: int
) -> tuple[_MemoryReader, torch.Tensor, np.ndarray]:
    """Noise-free images of a molecule translated by a known shift per particle.

    Returns the reader, the shifts (box units, the latents of a translation field) and the
    true map.
    """
    positions, masses, widths = _blobs(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    shifts_a = (torch.rand(n, 3, generator=generator) * 2 - 1) * max_shift_a
    rotations, ctf = _rotations(n, seed + 2), _ctf(n, seed + 3)
    spectra = render_projections(
        positions[None] + shifts_a[:, None],
        masses,
        widths,
        rotations,
        torch.zeros(n, 2),
        BOX,
        PIXEL_A,
        ctf,
    )
    truth = render_volume(positions, masses, widths, BOX, PIXEL_A).numpy()
    return _MemoryReader(spectra, ctf, rotations), shifts_a / (BOX * PIXEL_A), truth


def _translation(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    return latents[:, None, :].expand(-1, points.shape[0], -1)


def _no_motion(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    return torch.zeros(latents.shape[0], points.shape[0], 3)


def _geometry(reader: _MemoryReader, latents: torch.Tensor, field: object) -> DeformedGeometry:
    support = SupportGrid.sphere(BOX, BOX / 2 - 1)
    projector = DeformedProjector(support)
    return DeformedGeometry(reader, latents, field, ControlGrid(BOX, 5), projector)  # type: ignore[arg-type]


def _reconstruct(
    reader: _MemoryReader, latents: torch.Tensor, field: object, iterations: int = 0
) -> list[np.ndarray]:
    geometry = _geometry(reader, latents, field)
    support = geometry.projector.support
    rows = np.arange(len(latents))
    sums = backproject(geometry, rows, rows, 50)
    start = filtered_backprojection(sums, support, PIXEL_A, 1.0)
    states = refine(start, sums, lambda values: normal_pass(geometry, rows, values, 50), iterations)
    return [support.to_volume(state.values).numpy() for state in states]


def _lowest_fsc(volume: np.ndarray, truth: np.ndarray) -> float:
    """Lowest FSC to the truth over shells 1 .. 0.6 Nyquist (where the 2 Å blobs have power)."""
    curve = fsc(volume, truth, PIXEL_A).fsc
    return float(curve[1 : int(0.6 * (len(curve) - 1)) + 1].min())


@pytest.fixture(scope="module")
def translated() -> tuple[_MemoryReader, torch.Tensor, np.ndarray]:
    return _translated_particles(600, 6.0, 11)


def test_a_known_motion_is_undone(
    translated: tuple[_MemoryReader, torch.Tensor, np.ndarray],
) -> None:
    """With the true motion the map is sharp to 0.6 Nyquist; without it, blurred."""
    reader, latents, truth = translated
    corrected = _reconstruct(reader, latents, _translation)[-1]
    blurred = _reconstruct(reader, latents, _no_motion)[-1]
    assert _lowest_fsc(corrected, truth) > 0.95
    assert _lowest_fsc(blurred, truth) < 0.5


def test_iterations_lower_the_objective_and_sharpen_noise_free_maps(
    translated: tuple[_MemoryReader, torch.Tensor, np.ndarray],
) -> None:
    reader, latents, truth = translated
    geometry = _geometry(reader, latents, _translation)
    support = geometry.projector.support
    rows = np.arange(len(latents))
    sums = backproject(geometry, rows, rows, 50)
    start = filtered_backprojection(sums, support, PIXEL_A, 1.0)
    states = list(refine(start, sums, lambda v: normal_pass(geometry, rows, v, 50), 3))
    objective = [row["objective"] for row in states[-1].history]
    assert len(objective) == 4
    assert all(b < a for a, b in itertools.pairwise(objective)), objective
    first, last = (
        fsc(support.to_volume(s.values).numpy(), truth, PIXEL_A).fsc
        for s in (states[0], states[-1])
    )
    assert last[-3:].mean() > first[-3:].mean()


def test_sharded_sums_equal_the_whole(
    translated: tuple[_MemoryReader, torch.Tensor, np.ndarray],
) -> None:
    reader, latents, _ = translated
    geometry = _geometry(reader, latents, _translation)
    rows = np.arange(len(latents))
    whole = backproject(geometry, rows, rows, 64)
    parts = [backproject(geometry, rows, shard, 64) for shard in np.array_split(rows, 3)]
    merged = parts[0].merged(parts[1]).merged(parts[2])
    np.testing.assert_array_equal(merged.rows, whole.rows)
    for name in ("numerators", "transfers", "rigid"):
        a, b = getattr(merged, name), getattr(whole, name)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max())), name
    assert math.isclose(merged.data_norm, whole.data_norm, rel_tol=1e-6)
    with pytest.raises(ValueError, match="in both sums"):
        parts[0].merged(parts[0])
