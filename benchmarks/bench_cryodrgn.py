"""Consensus reconstruction against ``cryodrgn backproject_voxel`` on cryoJAX data.

Both programs reconstruct the same RELION dataset rendered by cryoJAX (``tests/
cryojax_data.py``: a random-walk chain of Gaussians, box 64 at 1.8 Å, 2,000 particles per
half set, band-limited images and true map): noise-free once, and at SNR 0.1 with
``N_NOISE_SEEDS`` noise draws of the same images. Ours runs through the command line
(``dynamight-core split-halves`` and ``reconstruct``); cryoDRGN 4.3.1 with its
defaults runs as a subprocess in its own virtual environment (``CRYODRGN_VENV``, default
``.venv-cryodrgn`` at the repository root), created on first use with the CPU build of
torch. cryoDRGN is never imported here.

Fairness and conventions: both read the same STAR and stack; cryoDRGN's poses and CTF come
from its own ``parse_pose_star`` and ``parse_ctf_star``, and it inverts the data by
default (its CTF is minus RELION's), as its documentation asks for RELION data. Its half
maps take alternate particles, the same split as the dataset's alternating
``rlnRandomSubset``. Its full map lines up with the true map as written (no flip, no
shift: checked by the best of the 48 axis permutations and flips, and by the peak of the
cross-correlation, both logged), so no conversion is applied. Each program's maps are
compared as it writes them: ours carry the solvent mask of the reconstruction stage,
cryoDRGN's are unmasked (its regularised division by the interpolation weights also
tapers them towards the box edge). FSCs are nearest-shell, unmasked, computed by our
``metrics.fsc`` for both.

Writes ``results/benchmarks/cryodrgn_fsc.tsv`` (per shell: FSC to the truth for each
program, noise-free and noisy mean and standard deviation over the seeds) and
``cryodrgn_summary.json`` (half-map FSC 0.143 resolutions, the acceptance check), and
logs a summary. ``BENCH_THREADS`` threads for both programs (default 2 here: both
reconstructions are short).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from cryojax_data import (  # noqa: E402
    RelionDataset,
    cryojax_images,
    default_structure,
    random_particles,
    write_relion_dataset,
)

from dynamight_core.io.mrc import read_volume  # noqa: E402
from dynamight_core.metrics.fsc import fsc  # noqa: E402

logger = logging.getLogger("bench_cryodrgn")

BOX = 64
PIXEL = 1.8
N_PARTICLES = 4000
SNR = 0.1
N_NOISE_SEEDS = 3
STRUCTURE_SEED = 1
PARTICLE_SEED = 2
CRYODRGN_VERSION = "4.3.1"
TORCH_PIN = "torch==2.13.0+cpu"
OUT = REPO / "results" / "benchmarks"


def threads() -> int:
    """Threads for both programs (``BENCH_THREADS``, default 2)."""
    return int(os.environ.get("BENCH_THREADS", "2"))


def cryodrgn_venv() -> Path:
    """The cryoDRGN virtual environment, created with a CPU torch when missing."""
    venv = Path(os.environ.get("CRYODRGN_VENV", REPO / ".venv-cryodrgn"))
    if (venv / "bin" / "cryodrgn").exists():
        return venv
    logger.info("creating %s with cryodrgn==%s and %s", venv, CRYODRGN_VERSION, TORCH_PIN)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write(f"{TORCH_PIN}\n")  # keeps pip from pulling a CUDA build
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--extra-index-url",
            "https://download.pytorch.org/whl/cpu",
            "-c",
            constraints.name,
            f"cryodrgn=={CRYODRGN_VERSION}",
            TORCH_PIN,
        ],
        check=True,
    )
    return venv


def run(command: list[str], log: Path) -> float:
    """Run a command with its output in ``log``; returns its wall time (s)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads()), "MKL_NUM_THREADS": str(threads())}
    start = time.perf_counter()
    with open(log, "a") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode:
        raise RuntimeError(f"{command[:3]} failed (exit {result.returncode}); see {log}")
    return time.perf_counter() - start


def read_map(path: Path) -> np.ndarray:
    """`(D, D, D)` float32 map of any MRC file (cryoDRGN's headers included)."""
    with mrcfile.open(path, permissive=True) as mrc:
        return np.asarray(mrc.data, dtype=np.float32).copy()


def ours(data: RelionDataset, log: Path) -> tuple[dict[str, np.ndarray], float]:
    """Our half maps and full map through the command line, and the wall time (s)."""
    out = data.folder / "ours"
    out.mkdir(exist_ok=True)
    script = Path(sys.executable).parent / "dynamight-core"
    cli = [str(script)] if script.exists() else [sys.executable, "-m", "dynamight_core"]
    halves = out / "halves.csv"
    run([*cli, "split-halves", "--star", str(data.star), "--out", str(halves)], log)
    maps = {name: out / f"{name}.mrc" for name in ("half1", "half2", "full")}
    seconds = run(
        [
            *cli,
            "reconstruct",
            "--star",
            str(data.star),
            "--halves",
            str(halves),
            "--out-half1",
            str(maps["half1"]),
            "--out-half2",
            str(maps["half2"]),
            "--out-full",
            str(maps["full"]),
            "--device",
            "cpu",
            "--threads",
            str(threads()),
        ],
        log,
    )
    return {name: read_map(path) for name, path in maps.items()}, seconds


def cryodrgn(
    data: RelionDataset, venv: Path, poses: Path, ctf: Path, log: Path
) -> tuple[dict[str, np.ndarray], float]:
    """cryoDRGN's half maps and full map (defaults), and the wall time (s)."""
    out = data.folder / "cryodrgn"
    seconds = run(
        [
            str(venv / "bin" / "cryodrgn"),
            "backproject_voxel",
            str(data.star),
            "--datadir",
            str(data.folder),
            "--poses",
            str(poses),
            "--ctf",
            str(ctf),
            "-o",
            str(out),
        ],
        log,
    )
    names = {"half1": "half_map_a.mrc", "half2": "half_map_b.mrc", "full": "backproject.mrc"}
    return {name: read_map(out / file) for name, file in names.items()}, seconds


def parse_star(data: RelionDataset, venv: Path, log: Path) -> tuple[Path, Path]:
    """cryoDRGN's pose and CTF files from the STAR file (its own parsers)."""
    poses, ctf = data.folder.parent / "poses.pkl", data.folder.parent / "ctf.pkl"
    cryodrgn_cli = str(venv / "bin" / "cryodrgn")
    run([cryodrgn_cli, "parse_pose_star", str(data.star), "-o", str(poses)], log)
    run([cryodrgn_cli, "parse_ctf_star", str(data.star), "-o", str(ctf)], log)
    return poses, ctf


def alignment_check(volume: np.ndarray, truth: np.ndarray) -> dict[str, object]:
    """Best axis permutation/flip by low-shell FSC with the truth, and the shift of the
    cross-correlation peak (0 when the map needs no conversion)."""
    scores = []
    for order in itertools.permutations(range(3)):
        for flips in itertools.product([False, True], repeat=3):
            moved = np.transpose(volume, order)
            for axis, flip in enumerate(flips):
                moved = np.flip(moved, axis) if flip else moved
            low = fsc(np.ascontiguousarray(moved), truth, PIXEL).fsc[1:10].mean()
            scores.append((float(low), order, flips))
    best = max(scores)
    product = np.fft.rfftn(volume) * np.conj(np.fft.rfftn(truth))
    peak = np.unravel_index(
        np.argmax(np.fft.irfftn(product, s=volume.shape, axes=(0, 1, 2))), volume.shape
    )
    shift = [int((p + BOX // 2) % BOX - BOX // 2) for p in peak]
    return {"best_order": best[1], "best_flips": best[2], "fsc_low": best[0], "shift_px": shift}


def curves(maps: dict[str, np.ndarray], truth: np.ndarray) -> tuple[np.ndarray, float]:
    """FSC of the full map with the truth per shell, and the half-map FSC 0.143 (Å)."""
    to_truth = fsc(maps["full"], truth, PIXEL).fsc
    half = fsc(maps["half1"], maps["half2"], PIXEL).resolution_at(0.143)
    return to_truth, float(half)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    venv = cryodrgn_venv()
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "cryodrgn_bench.log"
    log.write_text("")
    model = default_structure(BOX, PIXEL, STRUCTURE_SEED)
    particles = random_particles(N_PARTICLES, PARTICLE_SEED)
    clean = cryojax_images(model, particles, BOX, PIXEL, True, oversampling=2) * PIXEL**2
    logger.info("rendered %d cryoJAX images in %.0f s", N_PARTICLES, time.perf_counter() - start)
    results: dict[str, list[tuple[np.ndarray, float, np.ndarray, float]]] = {
        "noise_free": [],
        "noisy": [],
    }
    timings = {"ours": [], "cryodrgn": []}
    alignment: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("noise_free", math.inf, 0)] + [("noisy", SNR, s) for s in range(N_NOISE_SEEDS)]
        poses = ctf = None
        for kind, snr, seed in runs:
            folder = Path(tmp) / f"{kind}_{seed}"
            data = write_relion_dataset(folder, model, particles, clean, PIXEL, snr, seed)
            if poses is None or ctf is None:
                poses, ctf = parse_star(data, venv, log)
            truth = read_volume(data.truth).data
            our_maps, our_seconds = ours(data, log)
            their_maps, their_seconds = cryodrgn(data, venv, poses, ctf, log)
            timings["ours"].append(our_seconds)
            timings["cryodrgn"].append(their_seconds)
            if kind == "noise_free":
                alignment = alignment_check(their_maps["full"], truth)
                logger.info("cryoDRGN map vs truth: %s", alignment)
            mine, my_half = curves(our_maps, truth)
            theirs, their_half = curves(their_maps, truth)
            results[kind].append((mine, my_half, theirs, their_half))
            logger.info(
                "%s seed %d: half-map FSC 0.143 ours %.2f Å, cryoDRGN %.2f Å (%.0f s, %.0f s)",
                kind,
                seed,
                my_half,
                their_half,
                our_seconds,
                their_seconds,
            )
    table, summary = tabulate(results)
    summary["seconds"] = {k: float(np.median(v)) for k, v in timings.items()}
    summary["cryodrgn_alignment"] = {k: str(v) for k, v in alignment.items()}
    summary["total_seconds"] = time.perf_counter() - start
    table.to_csv(OUT / "cryodrgn_fsc.tsv", sep="\t", index=False, float_format="%.4f")
    (OUT / "cryodrgn_summary.json").write_text(json.dumps(summary, indent=2))
    log_summary(table, summary)
    return 0


def tabulate(
    results: dict[str, list[tuple[np.ndarray, float, np.ndarray, float]]],
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Per-shell table and summary, with the acceptance check (ours >= cryoDRGN within the
    spread of the noise draws: the standard deviation of the difference over the seeds)."""
    free_mine, free_half, free_theirs, free_their_half = results["noise_free"][0]
    mine = np.stack([r[0] for r in results["noisy"]])
    theirs = np.stack([r[2] for r in results["noisy"]])
    difference = mine - theirs
    spread = difference.std(axis=0, ddof=1) if len(mine) > 1 else np.zeros(mine.shape[1])
    shells = np.arange(mine.shape[1])
    table = pd.DataFrame(
        {
            "shell": shells,
            "resolution_a": np.where(shells > 0, BOX * PIXEL / np.maximum(shells, 1), np.inf),
            "noise_free_ours": free_mine,
            "noise_free_cryodrgn": free_theirs,
            "noisy_ours_mean": mine.mean(axis=0),
            "noisy_ours_std": mine.std(axis=0, ddof=1) if len(mine) > 1 else 0.0,
            "noisy_cryodrgn_mean": theirs.mean(axis=0),
            "noisy_cryodrgn_std": theirs.std(axis=0, ddof=1) if len(mine) > 1 else 0.0,
            "noisy_difference_mean": difference.mean(axis=0),
            "noisy_difference_std": spread,
        }
    )
    checked = shells >= 1
    noisy_ok = difference.mean(axis=0)[checked] >= -spread[checked]
    # noise-free: no draws to take a spread from; allow the float32 floor
    free_ok = (free_mine - free_theirs)[checked] >= -1e-3
    summary: dict[str, object] = {
        "dataset": f"cryoJAX, box {BOX}, {PIXEL} Å, {N_PARTICLES} particles, SNR {SNR}",
        "noise_seeds": len(mine),
        "half_map_fsc_0143_a": {
            "noise_free": {"ours": free_half, "cryodrgn": free_their_half},
            "noisy_ours": [r[1] for r in results["noisy"]],
            "noisy_cryodrgn": [r[3] for r in results["noisy"]],
        },
        "ours_at_least_cryodrgn_every_shell": {
            "noise_free": bool(free_ok.all()),
            "noisy_within_spread": bool(noisy_ok.all()),
            "noise_free_failing_shells": shells[checked][~free_ok].tolist(),
            "noisy_failing_shells": shells[checked][~noisy_ok].tolist(),
        },
    }
    return table, summary


def log_summary(table: pd.DataFrame, summary: dict[str, object]) -> None:
    """Every fourth shell and the acceptance check, through logging."""
    rows = table[(table["shell"] % 4 == 0) | (table["shell"] == table["shell"].max())]
    logger.info("FSC with the true map (noisy: mean ± std over %s seeds)", summary["noise_seeds"])
    logger.info("shell    Å   free ours  free cDRGN   noisy ours        noisy cDRGN")
    for row in rows.itertuples():
        logger.info(
            "%5d %5.2f %10.3f %10.3f   %.3f ± %.3f   %.3f ± %.3f",
            row.shell,
            row.resolution_a,
            row.noise_free_ours,
            row.noise_free_cryodrgn,
            row.noisy_ours_mean,
            row.noisy_ours_std,
            row.noisy_cryodrgn_mean,
            row.noisy_cryodrgn_std,
        )
    logger.info("half-map FSC 0.143 (Å): %s", summary["half_map_fsc_0143_a"])
    logger.info("ours >= cryoDRGN: %s", summary["ours_at_least_cryodrgn_every_shell"])
    logger.info("median wall time per reconstruction (s): %s", summary["seconds"])


if __name__ == "__main__":
    raise SystemExit(main())
