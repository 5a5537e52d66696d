"""Validation stages: seconds for local resolution and post-processing at box 64-256.

The baseline, measured in the same run on the same maps, is one masked FSC with phase
randomisation (what a post-processing step costs at least). Local resolution must finish
box 128 in minutes on a CPU (issue 17); it runs on CUDA when one is visible.
"""

from __future__ import annotations

import numpy as np
import torch
from common import configure, device, peak_rss_mb, print_table, seconds_per_call

from dynamight_core.geometry.masks import spherical_mask
from dynamight_core.metrics.fsc import flatten_amplitudes, masked_fsc
from dynamight_core.metrics.local_resolution import local_resolution
from dynamight_core.report.postprocessing import PostprocessSettings, postprocess

PIXEL_A = 1.06
REPEATS = {"repeats": 2, "warmup": 1}  # median of 2 after one warm-up call


def half_maps(box: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two noisy copies of a smooth random density inside a sphere, and its soft mask."""
    rng = np.random.default_rng(seed)
    mask = spherical_mask(box, 0.3 * box, 4.0)
    signal = np.fft.irfftn(np.fft.rfftn(rng.standard_normal((box,) * 3)) * 0.5, s=(box,) * 3)
    signal *= mask
    return (
        signal + 0.5 * rng.standard_normal(signal.shape),
        signal + 0.5 * rng.standard_normal(signal.shape),
        mask,
    )


def measure(box: int, where: torch.device) -> list[object]:
    """Seconds of the baseline, local resolution and post-processing at one box size."""
    first, second, mask = half_maps(box)
    baseline = seconds_per_call(
        lambda: masked_fsc(*flatten_amplitudes(first, second), mask, PIXEL_A), **REPEATS
    )
    local = seconds_per_call(
        lambda: local_resolution(first, second, PIXEL_A, mask=mask, device=where), **REPEATS
    )
    post = seconds_per_call(
        lambda: postprocess(first, second, mask, PIXEL_A, PostprocessSettings()), **REPEATS
    )
    return [box, baseline, local, local / baseline, post, post / baseline]


def main() -> None:
    threads = configure()
    where = device()
    rows = [measure(box, where) for box in (64, 128, 256)]
    print_table(
        f"validation stages on {where}, {threads} thread(s) (window 20 px, step 4 px)",
        ["box", "masked FSC (s)", "local res. (s)", "x FSC", "postprocess (s)", "x FSC"],
        rows,
    )
    print(f"peak RSS of this benchmark: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
