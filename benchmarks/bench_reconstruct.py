"""Consensus reconstruction throughput (particles/s) at box 128, and the insertion step
alone against torch-fourier-slice's insertion (the library route) in the same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from common import configure, device, peak_rss_mb, print_table, seconds_per_call

from dynamight_core.geometry.rotations import euler_to_matrix
from dynamight_core.io.stacks import ImageSource, validate_stacks
from dynamight_core.io.star import read_particles
from dynamight_core.reconstruct.homogeneous import reconstruct_half_maps
from dynamight_core.reconstruct.insertion import FourierAccumulator
from dynamight_core.simulate.dataset import SimulationConfig, simulate_dataset

BOX = 128
N_PARTICLES = 512
BATCH = 32


def insertion_rates(dev: torch.device) -> list[list[object]]:
    size = 2 * BOX
    g = torch.Generator().manual_seed(0)
    slices = torch.randn(BATCH, size, size // 2 + 1, dtype=torch.complex64, generator=g).to(dev)
    ctf = torch.rand(BATCH, size, size // 2 + 1, generator=g).to(dev)
    rotations = euler_to_matrix(torch.rand(BATCH, 3, generator=g) * 180).to(dev)
    accumulator = FourierAccumulator(BOX, 2, dev)
    # ours inserts each image's own-size transform at pad x its index (RELION's way)
    own_size = torch.randn(BATCH, BOX, BOX // 2 + 1, dtype=torch.complex64, generator=g).to(dev)
    own_ctf = torch.rand(BATCH, BOX, BOX // 2 + 1, generator=g).to(dev)

    def insert() -> None:
        accumulator.insert(own_size, own_ctf, rotations)

    ours = BATCH / seconds_per_call(insert, 3, 1)
    rows = [["insertion only", "ours (trilinear, pad 2)", ours, 1.0]]
    try:
        from torch_fourier_slice.slice_insertion import insert_central_slices_rfft_3d_multichannel
    except ImportError:
        return rows
    shifted = torch.fft.fftshift(torch.stack([slices * ctf, (ctf * ctf).to(slices)], 1), dim=-2)

    def library() -> None:
        insert_central_slices_rfft_3d_multichannel(
            shifted, (size,) * 3, rotations.transpose(-1, -2)
        )

    theirs = BATCH / seconds_per_call(library, 3, 1)
    rows.append(["insertion only", "torch-fourier-slice (pad 2)", theirs, theirs / ours])
    return rows


def end_to_end(dev: torch.device) -> list[list[object]]:
    with tempfile.TemporaryDirectory() as tmp:
        simulate_dataset(
            SimulationConfig(
                n_particles=N_PARTICLES,
                box_px=BOX,
                pixel_size_a=1.0,
                snr=0.1,
                motion="none",
                width_a=1.5,
            ),
            Path(tmp),
        )
        particles = read_particles(Path(tmp) / "particles.star")
        validate_stacks(particles)
        source = ImageSource(particles)
        start = time.perf_counter()
        reconstruct_half_maps(particles, source, particles.random_subset, device=dev)
        elapsed = time.perf_counter() - start
    return [
        [
            "half maps + full map",
            "read, CTF, insert, Wiener x2",
            N_PARTICLES / elapsed,
            float("nan"),
        ]
    ]


def main() -> None:
    threads = configure()
    dev = device()
    rows = insertion_rates(dev) + end_to_end(dev)
    print_table(
        f"reconstruction, box {BOX}, pad 2, {threads} thread(s), {dev}",
        ["what", "method", "particles/s", "ratio to ours"],
        rows,
    )
    print(f"peak RSS of this benchmark: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
