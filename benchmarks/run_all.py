"""Run every benchmark in its own process and report its peak memory (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "bench_render.py",
    "bench_reconstruct.py",
    "bench_cryodrgn.py",
    "bench_gaussians.py",
    "bench_vae.py",
    "bench_deformed_speed.py",
    "bench_validation.py",
    "bench_store.py",
    "bench_throughput.py",
    # the whole workflow on independent data (3 seeds, about 15 minutes on 2 cores): its
    # wall time beside the original's 70.6 minutes, and its maps against the truth
    "bench_deformed.py",
]


def main() -> int:
    failures = 0
    for name in BENCHMARKS:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(HERE / name)], cwd=HERE, check=False)
        print(
            f"-- {name}: {time.perf_counter() - start:.0f} s, exit {result.returncode}", flush=True
        )
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
