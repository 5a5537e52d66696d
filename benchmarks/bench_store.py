"""Particle store: training batches per second from the stacks vs from the store.

A dataset of 4,000 particles at box 128 (1.5 Å/px) in 8 ``.mrcs`` stacks (noise images: the
content does not change the reading cost) is read as shuffled batches of 64 on the VAE's
default training grid (vae.max_resolution_a) by ``BatchReader``: from the STAR file and
the stacks, and from the half set's particle store in float32 and float16. Printed: the
store-particles writing time, images/s of each path, the ratio (acceptance: the float32
store >= 5x the stacks) and the sizes on disk. Both paths read files that were just
written, so from the page cache: the ratio is what the store saves in reading, Fourier
transforms and crops, not in disk seeks (which add to the stacks' cost on real data).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np
import torch
from common import configure, print_table

from dynamight_core.config_schema import default_of
from dynamight_core.data.batches import BatchReader
from dynamight_core.data.store_images import store_layout, write_half_set_store
from dynamight_core.io.particle_store import ParticleStore, open_particle_store
from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import ParticleSet, read_particles, write_star
from dynamight_core.simulate.dataset import SimulationConfig, optics_table, particle_table
from dynamight_core.training.half_set_vae import TrainingGrid

STACKS = 8
PER_STACK = 500
BOX_PX = 128
PIXEL_A = 1.5
BATCH = 64
REQUIRED_RATIO = 5.0


def write_noise_dataset(
    folder: Path, n: int, box_px: int, pixel_a: float, per_stack: int = PER_STACK
) -> Path:
    """STAR file of simulated metadata (poses, CTFs, shifts) over noise stacks; its path.

    ``n`` images in stacks of ``per_stack``: image content changes neither the cost of
    reading nor that of training, and the simulator's renders cost far more at large boxes.
    """
    config = SimulationConfig(n_particles=n, box_px=box_px, pixel_size_a=pixel_a, motion="none")
    rng = np.random.default_rng(0)
    table = particle_table(config, rng).drop(columns=["motion_coordinate"])
    table["rlnImageName"] = [
        f"{i % per_stack + 1:06d}@stack_{i // per_stack}.mrcs" for i in range(n)
    ]
    for number, first in enumerate(range(0, n, per_stack)):
        count = min(per_stack, n - first)
        images = rng.standard_normal((count, box_px, box_px), dtype=np.float32)
        with mrcfile.new(folder / f"stack_{number}.mrcs", overwrite=True) as mrc:
            mrc.set_data(images)
            mrc.voxel_size = pixel_a
    star = folder / "particles.star"
    write_star(star, table, optics_table(config))
    return star


def images_per_second(reader: BatchReader, rows: np.ndarray, whole: bool, passes: int = 2) -> float:
    """Best of ``passes`` shuffled passes over ``rows`` in batches of ``BATCH``.

    ``whole``: full batches (``BatchReader.batches``: images, CTFs, poses, read one ahead);
    else only the image transforms, the part a store replaces.
    """
    best = float("inf")
    for seed in range(passes):
        order = np.random.default_rng(seed).permutation(rows)
        start = time.perf_counter()
        if whole:
            for _ in reader.batches(rows, BATCH, shuffle_seed=seed):
                pass
        else:
            for first in range(0, len(order), BATCH):
                reader.transforms(order[first : first + BATCH])
        best = min(best, time.perf_counter() - start)
    return len(rows) / best


def folder_mb(paths: list[Path]) -> float:
    """Total size of files in MB."""
    return sum(path.stat().st_size for path in paths) / 1e6


def write_store(
    folder: Path, particles: ParticleSet, rows: np.ndarray, crop_px: int, precision: str
) -> tuple[ParticleStore, float]:
    """The opened store and the seconds its writing took."""
    path = folder / f"store_{precision}"
    start = time.perf_counter()
    write_half_set_store(path, particles, rows, store_layout(particles, crop_px, precision))
    seconds = time.perf_counter() - start
    return open_particle_store(path, particles, rows), seconds


def main() -> None:
    threads = configure()
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        particles = read_particles(write_noise_dataset(folder, STACKS * PER_STACK, BOX_PX, PIXEL_A))
        rows = np.arange(len(particles))
        max_res_a = default_of("vae", "max_resolution_a")
        grid = TrainingGrid.for_resolution(BOX_PX, PIXEL_A, max_res_a, 64)
        stacks = ImageSource(particles)
        readers = {
            "stacks, full box (train-vae before)": BatchReader(particles, stacks, cpu),
            "stacks, cropped": BatchReader(particles, stacks, cpu, crop_px=grid.box_px),
        }
        written = {name: (float("nan"), folder_mb([*folder.glob("*.mrcs")])) for name in readers}
        for precision in ("float32", "float16"):
            store, seconds = write_store(folder, particles, rows, grid.box_px, precision)
            name = f"store {precision}"
            readers[name] = BatchReader(particles, store, cpu, crop_px=grid.box_px)
            written[name] = (seconds, folder_mb([*store.path.iterdir()]))
        table = []
        for name, reader in readers.items():
            images = images_per_second(reader, rows, whole=False)
            batches = images_per_second(reader, rows, whole=True)
            table.append([name, images, batches, *written[name]])
        base_images, base_batches = table[1][1], table[1][2]
        for row in table:
            row[3:3] = [row[1] / base_images, row[2] / base_batches]
        print_table(
            f"{len(rows)} particles, box {BOX_PX} in {STACKS} stacks, training grid "
            f"{grid.box_px} px ({max_res_a} Å), shuffled batches of {BATCH}, "
            f"{threads} thread(s); x: relative to the cropped stacks",
            ["source", "images/s", "batches: images/s", "x images", "x batches", "write s", "MB"],
            table,
        )
        ratio = table[2][3]
        verdict = "PASS" if ratio >= REQUIRED_RATIO else "FAIL"
        print(
            f"images from the float32 store / from the stacks: {ratio:.1f}x "
            f"(required >= {REQUIRED_RATIO:g}x): {verdict}; whole batches {table[2][4]:.1f}x "
            "(their CTFs cost the same from either source)"
        )


if __name__ == "__main__":
    main()
