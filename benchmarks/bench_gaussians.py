"""Gaussian model: fitting 5,000 Gaussians to a 128^3 map, and warm-up particles/s at box 128.

Both on BENCH_THREADS threads (default here: 2, the issue's "2 CPU cores"). The map is the
consensus reconstruction of a simulated box-128 dataset; the warm-up reads that dataset's
particles from disk like the real stage does.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import configure, device, peak_rss_mb, print_table

from dynamight_core.data.batches import BatchReader
from dynamight_core.io.mrc import read_volume, write_volume
from dynamight_core.io.stacks import ImageSource, validate_stacks
from dynamight_core.io.star import read_particles
from dynamight_core.metrics.fit_quality import fit_quality
from dynamight_core.models.seeding import SeedSettings, seed_model
from dynamight_core.reconstruct.homogeneous import reconstruct_half_maps
from dynamight_core.simulate.dataset import SimulationConfig, simulate_dataset
from dynamight_core.training.fit_map import FitSettings, fit_model_to_map, fit_weight
from dynamight_core.training.warmup import WarmupSettings, warm_up

BOX = 128
N_GAUSSIANS = 5000
N_PARTICLES = 1024


def main() -> None:
    os.environ.setdefault("BENCH_THREADS", "2")
    threads = configure()
    dev = device()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        simulate_dataset(
            SimulationConfig(
                n_particles=N_PARTICLES, box_px=BOX, pixel_size_a=1.0, snr=0.1, width_a=2.5, seed=1
            ),
            folder,
        )
        particles = read_particles(folder / "particles.star")
        validate_stacks(particles)
        source = ImageSource(particles)
        maps = reconstruct_half_maps(particles, source, particles.random_subset, device=dev)
        write_volume(folder / "half1.mrc", maps.half1, 1.0)
        volume = read_volume(folder / "half1.mrc")
        model, threshold = seed_model(volume, None, SeedSettings(n_gaussians=N_GAUSSIANS))
        weight = fit_weight(volume.data, threshold, None)
        model = model.to(dev)
        settings = FitSettings()
        start = time.perf_counter()
        fit_model_to_map(
            model,
            torch.as_tensor(volume.data, device=dev),
            torch.as_tensor(weight, device=dev),
            settings,
        )
        fit_seconds = time.perf_counter() - start
        with torch.no_grad():
            rendered = model.volume().cpu().numpy()
        quality = fit_quality(rendered, volume.data, weight, 1.0, (maps.half1, maps.half2))

        indices = np.arange(N_PARTICLES)
        reader = BatchReader(particles, source, dev)
        warm = WarmupSettings(epochs=1, noise_particles=256)
        start = time.perf_counter()
        warm_up(model, reader, indices[:-64], indices[-64:], warm)
        warm_seconds = time.perf_counter() - start
        # one epoch = the scale/noise passes over 256 particles + 960 training particles
        start = time.perf_counter()
        warm_up(
            model,
            reader,
            indices[:-64],
            indices[-64:],
            WarmupSettings(epochs=2, noise_particles=256),
        )
        epoch_seconds = time.perf_counter() - start - warm_seconds
    rows = [
        [
            "fit 5,000 Gaussians to a 128^3 map",
            f"{settings.iterations} Adam steps",
            fit_seconds,
            f"{fit_seconds / settings.iterations * 1000:.0f} ms/step",
            f"min FSC to map resolution {quality.min_fsc_to_map_resolution:.3f}",
        ],
        [
            "warm-up, box 128, 5,000 Gaussians",
            "one epoch, batch 64",
            epoch_seconds,
            f"{(N_PARTICLES - 64) / epoch_seconds:.0f} particles/s",
            "reads, CTF, render, loss, backward, Adam",
        ],
    ]
    print_table(
        f"Gaussian model, {threads} thread(s), {dev}",
        ["what", "settings", "seconds", "rate", "note"],
        rows,
    )
    print(f"peak RSS of this benchmark: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
