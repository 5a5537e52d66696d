"""The accuracy gates of a new decoder against ``mlp`` (issue 31), from ``bench_epochs.py`` runs.

    python benchmarks/decoder_gates.py NAME=BASIS_DIR,MLP_DIR ... [--epoch N]

Each pair is two ``bench_epochs.py --out`` folders trained on the same data with the same
settings and seeds, one with ``decoder=basis`` and one with ``decoder=mlp``. At epoch ``N``
(default: the last epoch both reached) and averaged over the 5 epochs around it (the
validation subset's scores move by about 0.01 from epoch to epoch), the gates are:

* latents: PC1 and best-dimension |Spearman| with the true coordinate not lower than
  ``mlp``'s by more than 0.01;
* motion: the median displacement error (fraction of the motion) not higher than
  ``mlp``'s by more than 5% (relative); for a curved path (a name starting with
  ``curved``) within 10%.

Prints one row per pair and gate, and each curve's epoch of best motion error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SCORES = ("spearman_pc1", "spearman_best", "error_fraction")


def smoothed(folder: Path, epoch: int) -> dict[str, float]:
    """The scores averaged over the 5 epochs centred on ``epoch`` (those present)."""
    table = pd.read_csv(folder / "epochs.tsv", sep="\t")
    near = table[(table["epoch"] - epoch).abs() <= 2]
    return {key: float(near[key].mean()) for key in SCORES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", help="NAME=BASIS_DIR,MLP_DIR")
    parser.add_argument("--epoch", type=int, default=None)
    args = parser.parse_args()
    rows = []
    for pair in args.pairs:
        name, _, dirs = pair.partition("=")
        new, reference = (Path(part) for part in dirs.split(","))
        last = min(
            int(pd.read_csv(folder / "epochs.tsv", sep="\t")["epoch"].max())
            for folder in (new, reference)
        )
        epoch = args.epoch or last
        ours, theirs = smoothed(new, epoch), smoothed(reference, epoch)
        tolerance = 0.10 if name.startswith("curved") else 0.05
        for key in SCORES:
            if key == "error_fraction":
                passed = ours[key] <= theirs[key] * (1 + tolerance)
                limit = f"<= {1 + tolerance:.2f} x mlp"
            else:
                passed = ours[key] >= theirs[key] - 0.01
                limit = ">= mlp - 0.01"
            rows.append([name, epoch, key, f"{ours[key]:.4f}", f"{theirs[key]:.4f}", limit, passed])
    table = pd.DataFrame(rows, columns=["data", "epoch", "score", "basis", "mlp", "gate", "pass"])
    print(table.to_string(index=False))
    return 0 if table["pass"].all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
