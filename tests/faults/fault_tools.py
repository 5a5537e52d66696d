"""Helpers of the fault suite: odd folder names, decoys, snapshots, a pure-noise dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path

import mrcfile
import numpy as np

from dynamight_core.simulate.dataset import SimulationConfig, simulate_dataset

ODD = Path("my data ü") / "run 1 'q' $x"
# the workflow's smallest useful settings: a few seconds per stage on one CPU
TINY = {
    "split": {"min_particles_per_half": 100},
    "gaussians": {"n_residues": 60, "iterations": 50},
    "warmup": {"epochs": 1, "noise_particles": 100},
    "vae": {"max_epochs": 1, "encoder_px": 32, "refine_steps": 2},
    "deformed": {"control_grid": 8},
    "explore": {"movie_frames": 4},
}


def snapshot(root: Path, *skip: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root`` but those under ``skip``: size, mtime and content hash."""
    files: dict[str, tuple[int, int, str]] = {}
    for path in sorted(root.rglob("*")):
        if any(path == folder or folder in path.parents for folder in skip):
            continue
        if path.is_file() or path.is_symlink():
            stat = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            files[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns, digest)
    return files


def decoys(*folders: Path) -> None:
    """Files named like the first word of paths in ``folders`` (what an unquoted path hits)."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("my", "keep", "run", "1", "data", "'q'", "$x", "q"):
            (folder / name).write_text(f"the user's own file {name}\n")


def noise_dataset(folder: Path) -> Path:
    """A simulated dataset whose every image is Gaussian noise (same std); its STAR file."""
    config = SimulationConfig(n_particles=600, box_px=32, pixel_size_a=3.0, n_truth_maps=2, seed=7)
    simulate_dataset(config, folder)
    with mrcfile.open(folder / "particles.mrcs", mode="r+") as stack:
        std = float(stack.data.std())
        noise = np.random.default_rng(7).normal(0.0, std, stack.data.shape)
        stack.data[:] = noise.astype(np.float32)
    return folder / "particles.star"
