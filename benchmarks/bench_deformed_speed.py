"""Deformed backprojection: our methods against the original DynaMight's, speed and accuracy.

Speed (particles/s, ms per particle) at box 64 and 128, all methods in the same process:

* ``adjoint`` (our default): :func:`~dynamight_core.reconstruct.deformed.backproject` over N
  particles with the forward decoder of the default shape (latent 6, 10 encoding
  frequencies, 8 x 32) as the field, on a 16^3 control grid, the support a sphere of radius
  0.4 D. This is the whole per-particle work of the stage: reading the batch, the field,
  the deformed adjoint and the undeformed kernel's accumulation (:mod:`.rigid_kernel`).
  That accumulation folds its spread grid (``RigidAccumulator.flush``, O((4D)^3 log D))
  every 16 batches of 32 in the workflow (``deformed.checkpoint_every``) and at the end of
  each quarter. ``ms/particle`` is the library's per-batch body of ``backproject`` (median
  of 3 passes over the N particles) plus one flush (timed once) per 512 particles, the
  workflow's rate; ``run ms/p`` is one call of ``backproject`` on the N particles divided
  by N, whose two flushes (one per quarter) dominate at small N. ``one-off s`` is
  :func:`filtered_backprojection` (once per half).
* ``inverse``: the same with the paper's field, minus an inverse network of the inverse
  stage's default shape (10 encoding frequencies, 6 x 64), as
  :func:`~dynamight_core.reconstruct.deformed.deformation_field` builds it.
* ``adjoint + k CG``: the backprojection plus k passes of
  :func:`~dynamight_core.reconstruct.deformed_solve.normal_pass` (one per conjugate-gradient
  iteration), per particle.
* ``original``: the original's ``deformable_backprojection`` (``../shared/notes/
  dynamight-anatomy.md`` section g), re-implemented here in fp32 torch (the original runs
  the MLP and volumes in fp16 on a GPU) for a batch of particles at a time, each with its
  own field:

  1. an inverse MLP of the original's size (positional encoding with 6 frequencies and the
     latent in, 96 wide, 6 hidden layers with ELU, ~60k parameters; our
     ``DisplacementDecoder(6, D, 6, 96, 6)`` with the encoding and first layer evaluated per
     particle, as the original concatenates them) at every point g of the (D/2)^3 grid
     ``linspace(-0.5, 0.5, D/2)``: c(g) = g + r(z, g);
  2. the sampling location s(g) = 2 g - c(g), written into a (D/2)^3 x 3 array (2, i.e.
     outside, where no point falls), upsampled x2 trilinearly (``align_corners=False``) and
     doubled into ``grid_sample`` units;
  3. the image (real space, hard circular mask of the support's radius) times its CTF in
     Fourier space, back to real space;
  4. smeared along z into a (D+1)^3 volume, rotated by ``affine_grid`` (the matrix A) and
     ``grid_sample`` (trilinear, ``align_corners=False``), cropped to D^3, warped by
     ``grid_sample`` at s (trilinear, ``align_corners=True``) and accumulated with weight 1/N
     (N: both halves);
  5. the denominator: the CTF zero-padded to 2D x 2D, inverse FFT (the PSF at twice the
     sampling), 3 x 3 average pool with stride 2 back to D x D, smeared along z, rotated as
     the image, 3-D FFT, squared (complex square, real part), accumulated with weight 1/N;
  6. once: map = iFFT(FFT(V) / max(F, D^3 / 250^3)) (``one-off s``).

  Steps 2 and 4 keep the original's grid conventions: its identity field does not map a
  voxel exactly onto itself (the coarse grid spans D-1 voxels and the x2 upsampling uses
  ``align_corners=False``: a magnification of 1/(D-2) about the centre, ~0.25 px at a
  radius of D/4), which is part of its accuracy.

Accuracy on a known motion (as ``tests/test_deformed_reconstruction.py``): images from the
Gaussian renderer (not from any projector under test) of a compact random molecule (200
Gaussians of 1 px in a ball of radius 0.3 D) translated per particle by a known shift
(uniform, up to 6 Å per axis), uniform poses, astigmatic CTFs, noise-free and at SNR 1
(white noise, the signal's variance over the box), box 64 at 2 Å/px. Ours: the latents
are the shifts (box units) and the field the constant translation (``inverse`` would
give the same map: minus an exact inverse of a translation is the translation; the CG
iterations are timed, not scored); ``zero field`` is ours without motion correction. The
original: its exact inverse field, c(g) = g - t, so s(g) = g + t (no MLP). Score: the
unmasked FSC with the true map, its area (mean over shells 1 to Nyquist) and where it
falls below 0.5 (Å).

Writes ``results/benchmarks/deformed_speed.json``. Environment (defaults in brackets):
``BENCH_DEFORMED_SPEED_BOXES`` (64,128), ``BENCH_DEFORMED_SPEED_PARTICLES`` (particles
timed per box, 64,32), ``BENCH_DEFORMED_SPEED_CG`` (3; 0: no CG row),
``BENCH_DEFORMED_SPEED_ACCURACY_BOXES`` (64; empty: none),
``BENCH_DEFORMED_SPEED_ACCURACY_PARTICLES`` (600), ``BENCH_DEFORMED_SPEED_SNR``
(inf,1), ``BENCH_DEFORMED_SPEED_OUT``, ``BENCH_THREADS`` (1), ``BENCH_DEVICE``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional
from common import configure, device, peak_rss_mb, print_table, seconds_per_call

from dynamight_core.data.batches import ParticleBatch
from dynamight_core.geometry.rotations import euler_to_matrix
from dynamight_core.metrics.fsc import FscCurve, fsc
from dynamight_core.models.decoder import DisplacementDecoder
from dynamight_core.physics.ctf import CtfParameters, compute_ctf
from dynamight_core.physics.render import render_projections, render_volume
from dynamight_core.reconstruct.deformed import (  # the loop body, timed on its own
    DeformedGeometry,
    DeformedSums,
    _backproject_batch,
    backproject,
    batch_rows,
)
from dynamight_core.reconstruct.deformed_filter import filtered_backprojection
from dynamight_core.reconstruct.deformed_projector import (
    ControlGrid,
    DeformedProjector,
    DisplacementField,
    SupportGrid,
)
from dynamight_core.reconstruct.deformed_solve import normal_pass
from dynamight_core.reconstruct.insertion import centred_transform
from dynamight_core.reconstruct.rigid_kernel import RigidAccumulator

logger = logging.getLogger("bench_deformed_speed")

REPO = Path(__file__).resolve().parents[1]
BOX_A = 128.0  # the box in Å at every box size: 2 Å/px at box 64
LATENT_DIM = 6
CONTROL_GRID = 16  # deformed.control_grid
BATCH = 32  # deformed.batch_size
FLUSH_EVERY = 16  # deformed.checkpoint_every: batches between two folds of the rigid sums
SUPPORT_FRACTION = 0.4  # support radius / box
MOLECULE_FRACTION = 0.3  # radius of the ball holding the molecule / box
N_GAUSSIANS = 200
WIDTH_PX = 1.0
MAX_SHIFT_A = 6.0
ORIGINAL_DOWNSAMPLE = 2  # --downsample
ORIGINAL_LAMBDA_BOX = 250.0  # the floor of the denominator is (D / 250)^3
ORIGINAL_FREQUENCIES, ORIGINAL_WIDTH, ORIGINAL_LAYERS = 6, 96, 6
INVERSE_WIDTH, INVERSE_LAYERS = 64, 6  # inverse.width, inverse.layers
DISPLACEMENT_PX = 1.0  # rough size of the random networks' displacements


def _ints(name: str, default: str) -> list[int]:
    return [int(v) for v in os.environ.get(name, default).split(",") if v.strip()]


def _floats(name: str, default: str) -> list[float]:
    return [float(v) for v in os.environ.get(name, default).split(",") if v.strip()]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall time of one call (synchronising CUDA) and its result."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


# ---------------------------------------------------------------------------------------------
# Particles
# ---------------------------------------------------------------------------------------------


@dataclass
class MemoryReader:
    """Particles held in memory, read like :class:`~dynamight_core.data.batches.BatchReader`."""

    spectra: torch.Tensor
    ctf: torch.Tensor
    rotations: torch.Tensor
    pixel_size_a: float

    @property
    def particle_set(self) -> MemoryReader:
        return self

    @property
    def device(self) -> torch.device:
        return self.spectra.device

    def read(self, rows: np.ndarray) -> ParticleBatch:
        index = torch.as_tensor(rows, device=self.device)
        return ParticleBatch(
            rows,
            self.spectra[index],
            self.ctf[index],
            self.rotations[index],
            torch.zeros(len(rows), 2, device=self.device),
        )

    def geometry(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(rows, device=self.device)
        return self.ctf[index], self.rotations[index]


@dataclass
class Particles:
    """Images of a molecule translated per particle, and what is known about them."""

    reader: MemoryReader
    latents: torch.Tensor  # (N, L): the translations (box units), or random for timing
    truth: np.ndarray  # (D, D, D) the untranslated molecule
    box_px: int
    pixel_size_a: float

    @property
    def n(self) -> int:
        return int(self.latents.shape[0])


def _rotations(n: int, generator: torch.Generator) -> torch.Tensor:
    euler = torch.rand(n, 3, generator=generator) * torch.tensor([360.0, 180.0, 360.0])
    euler[:, 1] = torch.rad2deg(torch.acos(1 - 2 * torch.rand(n, generator=generator)))
    return euler_to_matrix(euler)


def _ctf(n: int, box_px: int, pixel_a: float, generator: torch.Generator) -> torch.Tensor:
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
    return compute_ctf(params, box_px, pixel_a)


def make_particles(n: int, box_px: int, snr: float, seed: int, dev: torch.device) -> Particles:
    """Rendered, translated, CTF-modulated images; white noise at ``snr`` (inf: none)."""
    pixel_a = BOX_A / box_px
    generator = torch.Generator().manual_seed(seed)
    # a compact random molecule: Gaussians uniform in a ball
    direction = torch.randn(N_GAUSSIANS, 3, generator=generator)
    direction = direction / direction.norm(dim=1, keepdim=True)
    radius = torch.rand(N_GAUSSIANS, 1, generator=generator) ** (1 / 3)
    positions = direction * radius * MOLECULE_FRACTION * box_px * pixel_a
    masses = torch.rand(N_GAUSSIANS, 1, generator=generator) + 0.5
    widths = torch.tensor([WIDTH_PX * pixel_a])
    shifts_a = (torch.rand(n, 3, generator=generator) * 2 - 1) * MAX_SHIFT_A
    rotations, ctf = _rotations(n, generator), _ctf(n, box_px, pixel_a, generator)
    spectra = torch.cat(
        [
            render_projections(
                positions[None] + shifts_a[rows, None],
                masses,
                widths,
                rotations[rows],
                torch.zeros(len(rows), 2),
                box_px,
                pixel_a,
                ctf[rows],
            )
            for rows in torch.arange(n).split(64)
        ]
    )
    if math.isfinite(snr):
        images = torch.fft.irfft2(spectra, s=(box_px, box_px))
        sigma = math.sqrt(float(images.var(dim=(-2, -1)).mean()) / snr)
        noise = torch.randn(images.shape, generator=generator) * sigma
        spectra = spectra + torch.fft.rfft2(noise)
    truth = render_volume(positions, masses, widths, box_px, pixel_a).numpy()
    reader = MemoryReader(spectra.to(dev), ctf.to(dev), rotations.to(dev), pixel_a)
    return Particles(reader, (shifts_a / (box_px * pixel_a)).to(dev), truth, box_px, pixel_a)


# ---------------------------------------------------------------------------------------------
# Fields
# ---------------------------------------------------------------------------------------------


def random_network(
    box_px: int, frequencies: int, width: int, layers: int, seed: int, dev: torch.device
) -> DisplacementDecoder:
    """A network of the given shape whose output layer is not zero: it deforms (~1 px)."""
    torch.manual_seed(seed)
    net = DisplacementDecoder(LATENT_DIM, box_px, frequencies, width, layers).to(dev).eval()
    with torch.no_grad():
        scale = DISPLACEMENT_PX / box_px / math.sqrt(width)
        net.output.weight.normal_(0.0, scale)
    return net


def translation(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The field of a translation by the latent (box units)."""
    return latents[:, None, :].expand(-1, points.shape[0], -1)


def no_motion(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    return latents.new_zeros(latents.shape[0], points.shape[0], 3)


def our_geometry(particles: Particles, field: DisplacementField) -> DeformedGeometry:
    dev = particles.latents.device
    box = particles.box_px
    support = SupportGrid.sphere(box, SUPPORT_FRACTION * box, dev)
    return DeformedGeometry(
        particles.reader,
        particles.latents,
        field,
        ControlGrid(box, CONTROL_GRID, dev),
        DeformedProjector(support),
    )


# ---------------------------------------------------------------------------------------------
# The original's deformed backprojection
# ---------------------------------------------------------------------------------------------


def full_ctf(ctf: torch.Tensor) -> torch.Tensor:
    """`(B, D, D)` CTF on the full fft grid (DC at 0) from its rfft half (the CTF is even)."""
    box = ctf.shape[-2]
    rows = torch.remainder(-torch.arange(box, device=ctf.device), box)
    # column D - m holds frequency -m: CTF(ky, -m) = CTF(-ky, m)
    mirrored = ctf[:, rows, 1 : box // 2].flip(-1)
    return torch.cat([ctf[..., : box // 2], ctf[:, rows, box // 2 : box // 2 + 1], mirrored], -1)


class OriginalBackprojection:
    """The original DynaMight's deformed backprojection of one half set (module docstring).

    Parameters
    ----------
    box_px
        Box size D.
    n_total
        Particles in the whole data set (the weight of each is ``1 / n_total``).
    mask_radius_px
        Radius of the hard circular mask applied to the images.
    dev
        Where the volumes live.
    """

    def __init__(self, box_px: int, n_total: int, mask_radius_px: float, dev: torch.device) -> None:
        self.box_px = box_px
        self.weight = 1.0 / n_total
        coarse = box_px // ORIGINAL_DOWNSAMPLE
        axis = torch.linspace(-0.5, 0.5, coarse, device=dev)
        first, second, third = torch.meshgrid(axis, axis, axis, indexing="ij")
        # (n^3, 3) points (x, y, z) in box units; x varies slowest
        self.grid = torch.stack([first.flatten(), second.flatten(), third.flatten()], dim=1)
        self.cell = torch.div(
            torch.round((self.grid + 0.5) * (box_px - 1)),
            ORIGINAL_DOWNSAMPLE,
            rounding_mode="floor",
        ).long()
        centred = torch.arange(box_px, device=dev, dtype=torch.float32) - box_px // 2
        self.mask = (centred[:, None] ** 2 + centred[None, :] ** 2 <= mask_radius_px**2).float()
        self.volume = torch.zeros(box_px, box_px, box_px, device=dev)
        self.filter = torch.zeros(box_px, box_px, box_px, device=dev)

    def sampling_grid(self, inverse_positions: torch.Tensor) -> torch.Tensor:
        """`(B, D, D, D, 3)` ``grid_sample`` locations from `(B, n^3, 3)` c(g) (box units)."""
        batch, coarse = inverse_positions.shape[0], self.box_px // ORIGINAL_DOWNSAMPLE
        sampled = 2.0 * self.grid - inverse_positions  # s(g) = 2g - c(g)
        field = inverse_positions.new_full((batch, 3, coarse, coarse, coarse), 2.0)
        field[:, :, self.cell[:, 2], self.cell[:, 1], self.cell[:, 0]] = sampled.transpose(1, 2)
        upsampled = functional.interpolate(
            field, scale_factor=ORIGINAL_DOWNSAMPLE, mode="trilinear", align_corners=False
        )
        return (2.0 * upsampled).permute(0, 2, 3, 4, 1)

    def _rotate(self, images: torch.Tensor, rotation_grid: torch.Tensor) -> torch.Tensor:
        """`(B, 1, D, D, D)` images smeared along z, padded to D+1, rotated, cropped."""
        batch, box = images.shape[0], self.box_px
        smeared = images[:, None].expand(batch, box, box, box)
        smeared = functional.pad(smeared, (0, 1, 0, 1, 0, 1))[:, None]
        rotated = functional.grid_sample(
            smeared, rotation_grid, mode="bilinear", align_corners=False
        )
        return rotated[:, :, :-1, :-1, :-1]

    def psf(self, ctf: torch.Tensor) -> torch.Tensor:
        """`(B, D, D)` real-space CTF at twice the sampling, average-pooled back to D."""
        batch, box = ctf.shape[0], self.box_px
        index = torch.remainder(
            torch.fft.fftfreq(box, d=1.0 / box, device=ctf.device).round(), 2 * box
        )
        index = index.long()
        padded = ctf.new_zeros(batch, 2 * box, 2 * box)
        padded[:, index[:, None], index[None, :]] = full_ctf(ctf)
        fine = torch.fft.fftshift(torch.fft.ifft2(padded).real, dim=(-2, -1))
        return functional.avg_pool2d(fine[:, None], kernel_size=3, stride=2, padding=1)[:, 0]

    def insert(
        self,
        spectra: torch.Tensor,
        ctf: torch.Tensor,
        rotations: torch.Tensor,
        inverse_positions: torch.Tensor,
    ) -> None:
        """Add a batch of particles.

        Parameters
        ----------
        spectra
            `(B, D, D//2+1)` image transforms (DC at 0, image centre at D//2).
        ctf
            `(B, D, D//2+1)` CTFs.
        rotations
            `(B, 3, 3)` RELION matrices A.
        inverse_positions
            `(B, n^3, 3)` c(g) of every coarse grid point g.
        """
        batch, box = spectra.shape[0], self.box_px
        size = (box, box)
        images = torch.fft.irfft2(spectra, s=size) * self.mask
        premultiplied = torch.fft.irfft2(torch.fft.rfft2(images) * ctf, s=size)
        theta = torch.cat([rotations, rotations.new_zeros(batch, 3, 1)], dim=2)
        rotation_grid = functional.affine_grid(
            theta, [batch, 1, box + 1, box + 1, box + 1], align_corners=False
        )
        rotated = self._rotate(premultiplied, rotation_grid)
        warped = functional.grid_sample(
            rotated,
            self.sampling_grid(inverse_positions),
            mode="bilinear",
            align_corners=True,
        )
        self.volume += self.weight * warped.sum(dim=(0, 1))
        rotated_psf = self._rotate(self.psf(ctf), rotation_grid)[:, 0]
        dims = (-3, -2, -1)
        spectrum = torch.fft.fftn(torch.fft.fftshift(rotated_psf, dim=dims), dim=dims)
        self.filter += self.weight * (spectrum**2).real.sum(dim=0)

    def reconstruct(self) -> np.ndarray:
        """The map: iFFT(FFT(V) / max(F, D^3 / 250^3))."""
        dims = (-3, -2, -1)
        floor = (self.box_px / ORIGINAL_LAMBDA_BOX) ** 3
        spectrum = torch.fft.fftn(torch.fft.fftshift(self.volume, dim=dims), dim=dims)
        spectrum = spectrum / torch.clamp(self.filter, min=floor)
        volume = torch.fft.fftshift(torch.fft.ifftn(spectrum, dim=dims).real, dim=dims)
        return volume.cpu().numpy()


def original_map(
    particles: Particles,
    inverse_positions: Callable[[OriginalBackprojection, torch.Tensor], torch.Tensor],
    batch_size: int,
) -> tuple[OriginalBackprojection, float, float]:
    """Backproject every particle the original's way; its backprojection, the time of the
    particles and of the final division."""
    box = particles.box_px
    dev = particles.latents.device
    # the particles are one half of a data set twice their number
    original = OriginalBackprojection(box, 2 * particles.n, SUPPORT_FRACTION * box, dev)
    reader = particles.reader

    def run() -> None:
        with torch.no_grad():
            for start in range(0, particles.n, batch_size):
                rows = np.arange(start, min(start + batch_size, particles.n))
                batch = reader.read(rows)
                index = torch.as_tensor(rows, device=dev)
                positions = inverse_positions(original, particles.latents[index])
                original.insert(batch.images_ft, batch.ctf, batch.rotations, positions)

    elapsed, _ = _timed(run)
    final, _ = _timed(original.reconstruct)
    return original, elapsed, final


def original_batch(box_px: int) -> int:
    return 8 if box_px <= 64 else 4


# ---------------------------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------------------------


def flush_seconds(particles: Particles) -> float:
    """Seconds to fold the rigid sums once (``RigidAccumulator.flush``, O((4D)^3 log D))."""
    dev = particles.latents.device
    rows = np.arange(min(BATCH, particles.n))
    batch = particles.reader.read(rows)
    accumulator = RigidAccumulator(particles.box_px, dev)
    spectra = centred_transform(batch.images_ft, batch.shifts_a)
    accumulator.insert(batch.ctf, batch.rotations, spectra)
    seconds, _ = _timed(accumulator.flush)
    return seconds


def batch_seconds(geometry: DeformedGeometry, particles: Particles) -> float:
    """Seconds per particle of :func:`backproject`'s loop body (batches of 32), median of 3.

    The body (read, field, deformed adjoint, rigid insertion) is the library's own
    ``_backproject_batch``; the rigid sums' folds are left out (see :func:`flush_seconds`).
    """
    support = geometry.projector.support
    sums = DeformedSums.empty(support)
    accumulator = RigidAccumulator(particles.box_px, support.positions_px.device)
    batches = batch_rows(np.arange(particles.n), BATCH)

    def run() -> None:
        for rows in batches:
            _backproject_batch(geometry, 0, rows, sums, accumulator)

    return seconds_per_call(run, repeats=3, warmup=1) / particles.n


def time_ours(
    name: str,
    particles: Particles,
    field: DisplacementField,
    cg: int,
    flush_s: float,
) -> list[dict[str, Any]]:
    """Rows for our method with ``field``: the backprojection, and with ``cg`` normal passes."""
    geometry = our_geometry(particles, field)
    rows = np.arange(particles.n)
    per_particle = batch_seconds(geometry, particles)
    steady = per_particle + flush_s / (FLUSH_EVERY * BATCH)
    elapsed, sums = _timed(lambda: backproject(geometry, rows, rows, BATCH))
    support = geometry.projector.support
    filter_s, half = _timed(
        lambda: filtered_backprojection(sums, support, particles.pixel_size_a, 1.0)
    )
    base = {"box": particles.box_px, "particles": particles.n, "one_off_s": filter_s}
    result = [
        {
            **base,
            "method": name,
            "s_per_particle": steady,
            "run_s_per_particle": elapsed / particles.n,
            "batch_s_per_particle": per_particle,
            "flush_s": flush_s,
        }
    ]
    if cg and name == "adjoint":
        normal = seconds_per_call(
            lambda: normal_pass(geometry, rows, half.values, BATCH), repeats=3, warmup=0
        )
        per = normal / particles.n
        result.append(
            {
                **base,
                "method": f"adjoint + {cg} CG",
                "s_per_particle": steady + cg * per,
                "run_s_per_particle": elapsed / particles.n + cg * per,
                "normal_pass_s_per_particle": per,
            }
        )
    return result


def time_original(particles: Particles) -> dict[str, Any]:
    box = particles.box_px
    dev = particles.latents.device
    net = random_network(
        box, ORIGINAL_FREQUENCIES, ORIGINAL_WIDTH, ORIGINAL_LAYERS, seed=2, dev=dev
    )
    n_parameters = sum(p.numel() for p in net.parameters())

    def inverse_positions(original: OriginalBackprojection, latents: torch.Tensor) -> torch.Tensor:
        # per particle: the encoding and the first layer too, as the original concatenates
        points = original.grid.expand(latents.shape[0], -1, -1)
        return points + net(latents, points)

    batch_size = original_batch(box)
    warm = Particles(
        MemoryReader(
            particles.reader.spectra[:batch_size],
            particles.reader.ctf[:batch_size],
            particles.reader.rotations[:batch_size],
            particles.pixel_size_a,
        ),
        particles.latents[:batch_size],
        particles.truth,
        box,
        particles.pixel_size_a,
    )
    original_map(warm, inverse_positions, batch_size)
    _, elapsed, final = original_map(particles, inverse_positions, batch_size)
    return {
        "method": "original",
        "box": box,
        "particles": particles.n,
        "s_per_particle": elapsed / particles.n,
        "run_s_per_particle": elapsed / particles.n,
        "one_off_s": final,
        "mlp_parameters": n_parameters,
        "batch": batch_size,
    }


def speed(box: int, n: int, cg: int, dev: torch.device) -> list[dict[str, Any]]:
    logger.info("speed at box %d, %d particles", box, n)
    particles = make_particles(n, box, math.inf, seed=box, dev=dev)
    generator = torch.Generator().manual_seed(box)
    latents = torch.randn(n, LATENT_DIM, generator=generator).to(dev)
    particles = replace(particles, latents=latents)
    forward = random_network(box, 10, 32, 8, seed=0, dev=dev)
    inverse_net = random_network(box, 10, INVERSE_WIDTH, INVERSE_LAYERS, seed=1, dev=dev)

    def inverse_field(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return -inverse_net(latents, points)

    flush_s = flush_seconds(particles)
    rows = time_ours("adjoint", particles, forward, cg, flush_s)
    rows += time_ours("inverse", particles, inverse_field, 0, flush_s)
    logger.info("the original at box %d", box)
    original = time_original(particles)
    rows.append(original)
    for row in rows:
        row["ratio_vs_original"] = original["s_per_particle"] / row["s_per_particle"]
    return rows


# ---------------------------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------------------------


def score(curve: FscCurve) -> dict[str, Any]:
    return {
        "fsc_area": float(np.mean(curve.fsc[1:])),
        "fsc_05_a": curve.resolution_at(0.5),
        "fsc": [float(v) for v in curve.fsc],
    }


def our_volume(particles: Particles, field: DisplacementField) -> tuple[np.ndarray, float]:
    geometry = our_geometry(particles, field)
    support = geometry.projector.support
    rows = np.arange(particles.n)

    def run() -> np.ndarray:
        sums = backproject(geometry, rows, rows, BATCH)
        half = filtered_backprojection(sums, support, particles.pixel_size_a, 1.0)
        return support.to_volume(half.values).cpu().numpy()

    elapsed, volume = _timed(run)
    return volume, elapsed


def accuracy(box: int, n: int, snr: float, dev: torch.device) -> list[dict[str, Any]]:
    logger.info("accuracy at box %d, %d particles, SNR %s", box, n, snr)
    particles = make_particles(n, box, snr, seed=1000 + box, dev=dev)
    maps: dict[str, tuple[np.ndarray, float]] = {
        "adjoint": our_volume(particles, translation),
        "zero field (ours, no motion)": our_volume(particles, no_motion),
    }

    def exact_inverse(original: OriginalBackprojection, latents: torch.Tensor) -> torch.Tensor:
        return original.grid[None] - latents[:, None, :]  # c(g) = g - t

    original, elapsed, final = original_map(particles, exact_inverse, original_batch(box))
    maps["original"] = (original.reconstruct(), elapsed + final)
    rows = []
    for method, (volume, seconds) in maps.items():
        curve = fsc(volume, particles.truth, particles.pixel_size_a)
        rows.append(
            {
                "method": method,
                "box": box,
                "particles": n,
                "snr": snr,
                "seconds": seconds,
                **score(curve),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    threads = configure()
    dev = device()
    boxes = _ints("BENCH_DEFORMED_SPEED_BOXES", "64,128")
    counts = _ints("BENCH_DEFORMED_SPEED_PARTICLES", "64,32")
    counts = (counts + counts[-1:] * len(boxes))[: len(boxes)]
    cg = int(os.environ.get("BENCH_DEFORMED_SPEED_CG", "3"))
    accuracy_boxes = _ints("BENCH_DEFORMED_SPEED_ACCURACY_BOXES", "64")
    accuracy_n = int(os.environ.get("BENCH_DEFORMED_SPEED_ACCURACY_PARTICLES", "600"))
    snrs = _floats("BENCH_DEFORMED_SPEED_SNR", "inf,1")
    out = Path(
        os.environ.get(
            "BENCH_DEFORMED_SPEED_OUT", REPO / "results" / "benchmarks" / "deformed_speed.json"
        )
    )

    speed_rows = [
        row for box, n in zip(boxes, counts, strict=True) for row in speed(box, n, cg, dev)
    ]
    print_table(
        f"deformed backprojection speed, {threads} thread(s), {dev}",
        [
            "method",
            "box",
            "N",
            "particles/s",
            "ms/particle",
            "run ms/p",
            "speed-up vs original",
            "one-off s",
        ],
        [
            [
                r["method"],
                r["box"],
                r["particles"],
                1.0 / r["s_per_particle"],
                1e3 * r["s_per_particle"],
                1e3 * r["run_s_per_particle"],
                r["ratio_vs_original"],
                r["one_off_s"],
            ]
            for r in speed_rows
        ],
    )
    accuracy_rows = [
        row for box in accuracy_boxes for snr in snrs for row in accuracy(box, accuracy_n, snr, dev)
    ]
    if accuracy_rows:
        print_table(
            f"accuracy on a known translation (max {MAX_SHIFT_A:g} Å per axis), unmasked FSC to "
            "the truth",
            ["method", "box", "N", "SNR", "FSC area", "FSC 0.5 Å", "s"],
            [
                [
                    r["method"],
                    r["box"],
                    r["particles"],
                    r["snr"],
                    r["fsc_area"],
                    r["fsc_05_a"],
                    r["seconds"],
                ]
                for r in accuracy_rows
            ],
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "threads": threads,
        "device": str(dev),
        "settings": {
            "box_a": BOX_A,
            "control_grid": CONTROL_GRID,
            "batch_size": BATCH,
            "flush_every": FLUSH_EVERY,
            "support_fraction": SUPPORT_FRACTION,
            "max_shift_a": MAX_SHIFT_A,
            "n_gaussians": N_GAUSSIANS,
            "width_px": WIDTH_PX,
        },
        "speed": speed_rows,
        "accuracy": accuracy_rows,
        "peak_rss_mb": peak_rss_mb(),
    }
    out.write_text(json.dumps(summary, indent=1, default=float))
    logger.info("wrote %s; peak RSS %.0f MB", out, peak_rss_mb())


if __name__ == "__main__":
    main()
