"""Renderer: images/s (forward + backward) and error against the exact render.

Compares the project's renderer (cubic B-spline gridding with deapodisation, oversampling
2 by default, and 1) with the original DynaMight's bilinear splat + FFT kernel, in the same
run, on the same scenes. This benchmark is what decided the renderer's formulation.
"""

from __future__ import annotations

import torch
from baselines import bilinear_fft_projections
from common import configure, peak_rss_mb, print_table, seconds_per_call

from dynamight_core.geometry.rotations import euler_to_matrix
from dynamight_core.physics.exact import exact_projections
from dynamight_core.physics.render import images_from_fourier, render_projections

PIXEL_A = 1.5
SIGMA_PX = 1.5
BATCH = 32


def scene(box: int, n: int, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    positions = direction * torch.rand(n, 1, generator=g) ** (1 / 3) * box / 4 * PIXEL_A
    masses = torch.rand(n, 1, generator=g) + 0.5
    widths = torch.tensor([SIGMA_PX * PIXEL_A])
    euler = torch.rand(batch, 3, generator=g) * torch.tensor([360.0, 180.0, 360.0])
    shifts = (torch.rand(batch, 2, generator=g) - 0.5) * 4
    return positions, masses, widths, euler_to_matrix(euler), shifts


def methods(box: int) -> dict[str, object]:
    return {
        "ours (oversampling 2)": lambda *a: render_projections(*a, box, PIXEL_A),
        "ours (oversampling 1)": lambda *a: render_projections(*a, box, PIXEL_A, oversampling=1),
        "original (bilinear + FFT kernel)": lambda *a: bilinear_fft_projections(*a, box, PIXEL_A),
    }


def measure(box: int, n: int) -> list[list[object]]:
    positions, masses, widths, rotations, shifts = scene(box, n, BATCH)
    exact = exact_projections(positions, masses, widths, rotations[:4], shifts[:4], box, PIXEL_A)
    rows, baseline_rate = [], None
    for name, method in reversed(list(methods(box).items())):
        image = images_from_fourier(
            method(positions, masses, widths, rotations[:4], shifts[:4]), box
        )
        error = float((image.double() - exact).norm() / exact.norm())
        pos = positions.clone().requires_grad_(True)

        def step(method=method, pos=pos) -> None:
            out = method(pos, masses, widths, rotations, shifts)
            (out.real.square().sum() + out.imag.square().sum()).backward()

        rate = BATCH / seconds_per_call(step)
        baseline_rate = baseline_rate or rate
        rows.append([box, n, name, rate, rate / baseline_rate, error])
    return rows[::-1]


def main() -> None:
    threads = configure()
    rows = []
    for box, n in ((64, 2000), (64, 5000), (128, 2000), (128, 5000)):
        rows.extend(measure(box, n))
    print_table(
        f"renderer, sigma {SIGMA_PX} px, batch {BATCH}, {threads} thread(s), fwd+bwd",
        ["box", "gaussians", "method", "images/s", "speed vs original", "rel. L2 error vs exact"],
        rows,
    )
    print(f"peak RSS of this benchmark: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
