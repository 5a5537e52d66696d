"""Reading a simulated dataset's ground truth back: the motion and each particle's state."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dynamight_core.simulate.motion import HingeMotion, InterpolationMotion, Motion


@dataclass(frozen=True)
class SimulationTruth:
    """Ground truth of a simulated dataset.

    Attributes
    ----------
    motion
        The simulated motion (positions of the pseudo-atoms along it).
    coordinates
        `(N,)` motion coordinate of every particle (STAR row order).
    image_names
        `(N,)` ``rlnImageName`` of every particle.
    amplitude_a
        Motion amplitude: the mean, over moving atoms, of the distance from an atom's
        mean position over the dataset's range of states to its farthest position.
    """

    motion: Motion
    coordinates: np.ndarray
    image_names: np.ndarray
    amplitude_a: float


def load_truth(folder: str | Path) -> SimulationTruth:
    """Read ``truth.csv``, ``truth/atoms.csv`` and ``truth/motion.json`` of a simulation."""
    folder = Path(folder)
    table = pd.read_csv(folder / "truth.csv")
    atoms = pd.read_csv(folder / "truth" / "atoms.csv")
    description = json.loads((folder / "truth" / "motion.json").read_text())["motion"]
    reference = atoms[["x_a", "y_a", "z_a"]].to_numpy()
    moving = atoms["moving"].to_numpy().astype(bool)
    if description["type"] == "hinge":
        motion: Motion = HingeMotion(
            reference,
            moving,
            np.array(description["point_a"]),
            np.array(description["axis"]),
            float(description["max_angle_deg"]),
        )
    else:
        delta = pd.read_csv(folder / "truth" / "interpolation_delta.csv").to_numpy()
        motion = InterpolationMotion(reference - 0.5 * delta, reference + 0.5 * delta)
    states = motion.positions(np.linspace(0.0, 1.0, 21))[:, moving]
    centre = states.mean(axis=0)
    amplitude = (
        float(np.linalg.norm(states - centre, axis=-1).max(axis=0).mean()) if moving.any() else 0.0
    )
    return SimulationTruth(
        motion, table["motion_coordinate"].to_numpy(), table["rlnImageName"].to_numpy(), amplitude
    )
