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
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from motion_truth import demo_truth, scores, t4l_truth  # noqa: E402

from dynamight_core import cli  # noqa: E402
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
    outputs into ``out``, no checkpoint, and ``settings`` (``key=value``; ``key=`` drops
    the flag, e.g. ``store=`` reads the stacks) applied."""
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
            if value == "":
                continue
        elif value is not None and "/" in value and not Path(value).is_absolute():
            value = str(REPO / value)
        result += [flag] if value is None else [flag, value]
    for key, value in changes.items():
        result += [f"--{key}", value]
    return result


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
