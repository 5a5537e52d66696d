"""Latent accuracy and motion error after every training epoch, against the truth (issue 31).

Runs the real ``train-vae`` stage of a finished workflow run (its command line, read from
``logs/train_vae_half{H}.log``) in this process with some settings changed (``--set
decoder=basis max-epochs=40 ...``: flags without the dashes), writing into ``--out``, and
after every epoch scores the model against the dataset's known motion:

* ``spearman_pc1``: |Spearman| of the first principal component of the validation
  particles' latents (refined and tracked, as the stage keeps them) with the true motion
  coordinate; ``spearman_best``: the best single latent dimension's;
* ``error_fraction``: the median over the validation particles and the moving pseudo-atoms
  of the decoded displacement's error (a constant offset per pseudo-atom removed: the
  consensus may sit anywhere along the motion) as a fraction of the motion's amplitude;
  ``static_rms_a``: the RMS decoded displacement of the pseudo-atoms that do not move;
* the stopping statistics of ``training/stopping.py`` (validation loss, the share of its
  descent made in the last window, the latents' change).

Truth: ``--truth demo`` for the project simulator's output (``simulated/`` of the run:
``truth.csv``, the motion); ``--truth t4l`` for a ``deformed_data.py`` cryoJAX dataset
(``--data``: its folder; the hinge angle per particle, the structure's atoms moved about
the hinge; a pseudo-atom moves as its nearest atom).

Writes ``--out``/epochs.tsv (one row per epoch) and prints it.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from dynamight_core import cli  # noqa: E402
from dynamight_core.simulate.agreement import first_principal_component  # noqa: E402
from dynamight_core.training import vae as vae_training  # noqa: E402

logger = logging.getLogger("bench_epochs")
REPO = HERE.parent
OUTPUT_FLAGS = ("--out-model", "--out-latents", "--out-history", "--out-png", "--record", "--log")


def stage_command(run: Path, half: int) -> list[str]:
    """The ``train-vae`` arguments the workflow ran for ``half`` (from its log)."""
    log = run / "logs" / f"train_vae_half{half}.log"
    for line in log.read_text().splitlines():
        found = re.search(r"__main__\.py (train-vae .*)$", line)
        if found:
            return shlex.split(found.group(1))
    raise SystemExit(f"{log}: no train-vae command line")


def with_settings(argv: list[str], out: Path, settings: list[str]) -> list[str]:
    """``argv`` with relative paths made absolute (the workflow runs in the repository),
    outputs into ``out``, no checkpoint, and ``settings`` (``key=value``) applied."""
    changes = dict(item.split("=", 1) for item in settings)
    result = [argv[0]]
    pairs: list[tuple[str, str | None]] = []
    for item in argv[1:]:
        if item.startswith("--"):
            pairs.append((item, None))
        else:
            pairs[-1] = (pairs[-1][0], item)
    for flag, value in pairs:
        key = flag[2:]
        if flag == "--checkpoint-dir":
            continue
        if flag in OUTPUT_FLAGS and value is not None:
            value = str(out / Path(value).name)
        elif key in changes:
            value = changes.pop(key)
        elif value is not None and "/" in value and not Path(value).is_absolute():
            value = str(REPO / value)
        result += [flag] if value is None else [flag, value]
    for key, value in changes.items():
        result += [f"--{key}", value]
    return result


def demo_truth(run: Path) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(STAR rows, consensus Å) -> (true coordinates, `(P, N, 3)` true displacements Å)."""
    from dynamight_core.simulate.motion import true_displacements_a
    from dynamight_core.simulate.truth import load_truth

    truth = load_truth(run / "simulated")

    def of(rows: np.ndarray, consensus_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coordinates = truth.coordinates[rows]
        return coordinates, true_displacements_a(truth.motion, consensus_a, coordinates)

    return of


def t4l_truth(data: Path) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The same for a ``deformed_data.py`` dataset (hinge angle, atoms about the hinge)."""
    from deformed_data import (
        HINGE_RESIDUES,
        MAX_ANGLE_DEG,
        MOVING_RESIDUES,
        STRUCTURE,
        WIDTH_A,
        load_structure,
    )
    from scipy.spatial import cKDTree

    structure = load_structure(
        STRUCTURE, MOVING_RESIDUES, HINGE_RESIDUES, WIDTH_A, open_offset_deg=MAX_ANGLE_DEG
    )
    theta = pd.read_csv(data / "motion.csv")["theta_deg"].to_numpy()
    mid = structure.positions_at(0.0).reshape(-1, 3)

    def of(rows: np.ndarray, consensus_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nearest = cKDTree(mid).query(consensus_a)[1]
        moved = structure.positions_at(theta[rows]).reshape(len(rows), -1, 3)
        return theta[rows], moved[:, nearest] - mid[nearest][None]

    return of


def scores(
    model: Any, latents: torch.Tensor, rows: np.ndarray, truth: Callable[..., Any]
) -> dict[str, float]:
    """Latent and motion accuracy of ``model`` at the validation ``latents`` `(P, L)`."""
    with torch.no_grad():
        decoded = model.displacements_a(latents.to(model.consensus.positions.device)).cpu()
        consensus = model.consensus.positions_a().cpu().numpy()
    coordinates, true_a = truth(rows, consensus)
    decoded_a = decoded.numpy()
    offset = (true_a - decoded_a).mean(axis=0, keepdims=True)
    errors = np.linalg.norm(decoded_a + offset - true_a, axis=-1)
    amplitude = np.linalg.norm(true_a - true_a.mean(0, keepdims=True), axis=-1)
    moving = amplitude.mean(0) > 0.5 * amplitude.mean(0).max()
    values = latents.numpy()
    best = max(abs(stats.spearmanr(values[:, d], coordinates)[0]) for d in range(values.shape[1]))
    return {
        "spearman_pc1": float(
            abs(stats.spearmanr(first_principal_component(values), coordinates)[0])
        ),
        "spearman_best": float(best),
        "error_fraction": float(
            np.median(errors[:, moving]) / np.percentile(amplitude[:, moving], 95)
        ),
        "static_rms_a": float(np.sqrt((decoded_a[:, ~moving] ** 2).sum(-1).mean())),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished workflow run")
    parser.add_argument("--half", type=int, default=1)
    parser.add_argument("--truth", choices=("demo", "t4l"), default="demo")
    parser.add_argument("--data", type=Path, help="the cryoJAX dataset (--truth t4l)")
    parser.add_argument(
        "--command-run",
        type=Path,
        help="take the train-vae command from this run instead, its results/ read as --run",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", nargs="*", default=[], help="stage flags, e.g. decoder=basis")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    truth = demo_truth(args.run) if args.truth == "demo" else t4l_truth(args.data)
    command = stage_command(args.command_run or args.run, args.half)
    if args.command_run:
        command = [
            str(args.run / item[len("results/") :]) if item.startswith("results/") else item
            for item in command
        ]
    argv = with_settings(command, args.out, args.set)
    rows: list[dict[str, float]] = []
    original = vae_training._epoch

    def scored_epoch(vae: Any, optimizer: Any, reader: Any, split: Any, *rest: Any) -> Any:
        graph = original(vae, optimizer, reader, split, *rest)
        state = rest[2]
        row = {"epoch": state.epoch, **state.history[-1]}
        row.update(scores(vae.model, state.validation_latents, split[1], truth))
        rows.append(row)
        logger.info("epoch %d: %s", state.epoch, {k: round(v, 4) for k, v in row.items()})
        pd.DataFrame(rows).to_csv(args.out / "epochs.tsv", sep="\t", index=False)
        return graph

    vae_training._epoch = scored_epoch  # type: ignore[assignment]
    status = cli.main(argv)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return status


if __name__ == "__main__":
    sys.exit(main())
