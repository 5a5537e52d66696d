"""Which conformation a map shows, and the reference states of the deformed maps (issue 28).

Used by ``bench_deformed.py`` (every seed's maps) and runnable on its finished runs::

    .venv/bin/python benchmarks/state_scores.py results/benchmarks/deformed_runs/motion_seed*

Scores, per map, against the dataset's true maps on a grid of hinge angles
(``STATE_GRID_DEG``: -20° to +20° in steps of 2°, 21 states, 0 the mid state): the masked
FSC area (molecule mask, shells matched to the truth's amplitudes as ``bench_deformed``)
with each state, and the state it matches best. Also the half maps' own masked FSC area
(amplitudes flattened, phase randomisation as post-processing; molecule mask) for the
deformed and the consensus half maps.

As a script, for each run folder and each ``deformed.reference`` (``trained``,
``consensus_fit``, ``mean``), the two half maps are made again by the CLI stages
(``backproject-deformed``, ``solve-deformed``, ``fsc-deformed``, into
``<run>/reference_states/<reference>/``, reused when present) from the run's trained VAEs,
and scored: the measurement behind the default. Writes
``results/benchmarks/reference_states.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from bench_cryodrgn import read_map
from deformed_data import DomainMotionDataset, state_maps

from dynamight_core.metrics.fsc import flatten_amplitudes, fsc, masked_fsc

logger = logging.getLogger("state_scores")

REPO = Path(__file__).resolve().parents[1]
STATE_GRID_DEG = np.linspace(-20.0, 20.0, 21)
REFERENCES = ("trained", "consensus_fit", "mean")


def amplitude_matched(volume: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``volume`` with each Fourier shell scaled to the truth's amplitude."""
    box = volume.shape[0]
    axis = np.fft.fftfreq(box) * box
    radius = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    shells = np.round(radius).astype(int).ravel()
    spectrum, reference = np.fft.fftn(volume), np.fft.fftn(truth)
    power = np.bincount(shells, np.abs(spectrum.ravel()) ** 2)
    target = np.bincount(shells, np.abs(reference.ravel()) ** 2)
    gain = np.sqrt(target / np.maximum(power, 1e-300))
    return np.fft.ifftn(spectrum * gain[shells].reshape(spectrum.shape)).real


def area(values: np.ndarray) -> float:
    """Mean FSC over shells 1 to Nyquist."""
    return float(np.mean(values[1:]))


def state_profile(
    volume: np.ndarray, states: dict[float, np.ndarray], mask: np.ndarray, pixel_a: float
) -> dict[str, Any]:
    """Masked FSC area of ``volume`` with every true state, and the best state (degrees)."""
    areas = {}
    for theta, truth in states.items():
        matched = amplitude_matched(volume, truth)
        areas[theta] = area(fsc(matched * mask, truth * mask, pixel_a).fsc)
    best = max(areas, key=lambda theta: areas[theta])
    return {
        "best_state_deg": best,
        "area_at_mid": areas[0.0],
        "areas": [round(areas[theta], 5) for theta in sorted(areas)],
    }


def half_map_area(first: np.ndarray, second: np.ndarray, mask: np.ndarray, pixel_a: float) -> float:
    """Masked, phase-randomisation-corrected FSC area of a pair of half maps."""
    flat = flatten_amplitudes(first, second)
    return area(masked_fsc(flat[0], flat[1], mask, pixel_a).corrected.fsc)


def score_pairs(
    pairs: dict[str, tuple[np.ndarray, np.ndarray]], data: DomainMotionDataset
) -> dict[str, Any]:
    """Per pair of half maps: each half's and the average's state profile, the half-map area."""
    states = state_maps(data, STATE_GRID_DEG)
    mask = read_map(data.mask_molecule).astype(np.float64)
    pixel = data.pixel_size_a
    scores: dict[str, Any] = {}
    for label, (first, second) in pairs.items():
        entry: dict[str, Any] = {
            f"half{number}": state_profile(volume, states, mask, pixel)
            for number, volume in ((1, first), (2, second))
        }
        entry["average"] = state_profile(0.5 * (first + second), states, mask, pixel)
        entry["half_map_masked_area"] = round(half_map_area(first, second, mask, pixel), 5)
        scores[label] = entry
    return scores


def read_pair(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``half1.mrc`` and ``half2.mrc`` of ``folder`` (float64)."""
    return tuple(read_map(folder / f"half{h}.mrc").astype(np.float64) for h in (1, 2))  # type: ignore[return-value]


def state_truth_deg(workflow: Path, data: DomainMotionDataset, percentile: float) -> float:
    """The true hinge angle of a state: the median over both halves of the true angles of
    the particles within 2.5 percentiles of ``percentile`` on their half's aligned PC1."""
    import pandas as pd

    from dynamight_core.data.latent_space import latent_pca
    from dynamight_core.data.latents import read_latent_means

    truth = pd.read_csv(data.motion)["theta_deg"].to_numpy()
    alignment = json.loads((workflow / "latent" / "alignment.json").read_text())
    angles = []
    for half in (1, 2):
        table, means = read_latent_means(workflow / "vae" / f"half{half}" / "latents.csv")
        sign = alignment["sign"] if half == 2 else 1
        scores = sign * latent_pca(means).scores[:, 0]
        low, high = np.percentile(scores, [max(percentile - 2.5, 0), min(percentile + 2.5, 100)])
        inside = (scores >= low) & (scores <= high)
        angles.append(truth[table["row"].to_numpy()[inside]])
    return float(np.median(np.concatenate(angles)))


def score_states(workflow: Path, data: DomainMotionDataset) -> list[dict[str, Any]]:
    """Each state map (``states/``) and the consensus against the truth of that state."""
    record = json.loads((workflow / "states" / "fsc.json").read_text())
    mask = read_map(data.mask_molecule).astype(np.float64)
    consensus = read_map(workflow / "consensus" / "full.mrc").astype(np.float64)
    results = []
    for state in record["states"]:
        theta = round(state_truth_deg(workflow, data, state["percentile"]), 2)
        truth = state_maps(data, np.array([theta]))[theta]
        volume = read_map(workflow / "states" / state["map"]).astype(np.float64)

        def versus(candidate: np.ndarray, truth: np.ndarray = truth) -> float:
            matched = amplitude_matched(candidate, truth)
            return area(fsc(matched * mask, truth * mask, data.pixel_size_a).fsc)

        results.append(
            {
                "percentile": state["percentile"],
                "true_state_deg": theta,
                "state_map_area": round(versus(volume), 5),
                "consensus_area": round(versus(consensus), 5),
                "halves_apart_a": state.get("agreement", {}).get("rms_a"),
                "half_map_masked_area": state.get("masked_fsc_area"),
            }
        )
    return results


# ---------------------------------------------------------------------------------------------
# Remaking a run's deformed maps in each reference state
# ---------------------------------------------------------------------------------------------


def stage(arguments: list[str], log: Path) -> None:
    """Run one CLI stage, its output appended to ``log``."""
    command = [sys.executable, "-m", "dynamight_core", *arguments]
    with open(log, "a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        if subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode:
            raise RuntimeError(f"{arguments[0]} failed; see {log}")


def remake(run: Path, data: DomainMotionDataset, reference: str, threads: int) -> Path:
    """The run's two deformed half maps in ``reference``, made once into a folder."""
    workflow = run / "workflow"
    folder = run / "reference_states" / reference
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "stages.log"
    for half in (1, 2):
        common = [
            "--star",
            str(data.star),
            "--halves",
            str(workflow / "halves.csv"),
            "--half",
            str(half),
            "--model",
            str(workflow / "vae" / f"half{half}" / "model.pt"),
            "--latents",
            str(workflow / "vae" / f"half{half}" / "latents.csv"),
            "--consensus-fit",
            str(workflow / "gaussians" / f"warmup_half{half}.pt"),
            "--reference",
            reference,
            "--threads",
            str(threads),
        ]
        sums = folder / f"sums_half{half}.pt"
        if not sums.exists():
            stage(["backproject-deformed", *common, "--out-sums", str(sums)], log)
        if not (folder / f"half{half}.mrc").exists():
            stage(
                [
                    "solve-deformed",
                    *common,
                    "--sums",
                    str(sums),
                    "--out-map",
                    str(folder / f"half{half}.mrc"),
                    "--out-history",
                    str(folder / f"solve_half{half}.tsv"),
                    "--out-iterations",
                    str(folder / f"iterations_half{half}.pt"),
                    "--out-reference",
                    str(folder / f"reference_state_half{half}.pt"),
                ],
                log,
            )
    return folder


def agreement(folder: Path, run: Path, data: DomainMotionDataset) -> dict[str, Any]:
    """How far the two half maps' conformations are apart, as fsc-deformed computes it."""
    from dynamight_core.stages.fsc_deformed import reference_agreement

    mask = read_map(data.mask_molecule).astype(np.float64)
    return reference_agreement(
        [str(folder / f"reference_state_half{h}.pt") for h in (1, 2)],
        read_pair(folder),
        read_pair(run / "workflow" / "consensus"),
        mask,
        data.pixel_size_a,
    )


def compare_references(run: Path, threads: int) -> dict[str, Any]:
    """Scores of one run's deformed maps in each reference state, and of its consensus."""
    data = DomainMotionDataset.in_folder(run / "data")
    pairs = {"consensus": read_pair(run / "workflow" / "consensus")}
    agreements = {}
    for reference in REFERENCES:
        folder = remake(run, data, reference, threads)
        pairs[reference] = read_pair(folder)
        agreements[reference] = agreement(folder, run, data)
    scores = score_pairs(pairs, data)
    for reference in REFERENCES:
        scores[reference]["agreement"] = agreements[reference]
    return scores


def print_comparison(results: dict[str, dict[str, Any]]) -> None:
    """One line per run and map."""
    header = (
        f"{'run':<16} {'map':<14} {'best h1':>8} {'best h2':>8} {'best avg':>8} "
        f"{'h1@mid':>7} {'h2@mid':>7} {'avg@mid':>7} {'halfFSC':>7} {'apart Å':>7}"
    )
    print(header)
    for run, scores in results.items():
        for label, entry in scores.items():
            apart = entry.get("agreement", {}).get("disagreement", {}).get("rms_a")
            print(
                f"{run:<16} {label:<14} {entry['half1']['best_state_deg']:>+8.0f} "
                f"{entry['half2']['best_state_deg']:>+8.0f} "
                f"{entry['average']['best_state_deg']:>+8.0f} "
                f"{entry['half1']['area_at_mid']:>7.4f} {entry['half2']['area_at_mid']:>7.4f} "
                f"{entry['average']['area_at_mid']:>7.4f} {entry['half_map_masked_area']:>7.4f} "
                f"{'' if apart is None else f'{apart:.3f}':>7}"
            )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench_deformed run folders")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=REPO / "results" / "benchmarks" / "reference_states.json"
    )
    args = parser.parse_args(argv)
    results = {run.name: compare_references(run, args.threads) for run in args.runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print_comparison(results)
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
