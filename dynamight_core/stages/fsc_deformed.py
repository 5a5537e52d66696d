"""Stage ``fsc-deformed``: the deformed half maps beside the consensus, in one table and plot.

Writes the deformed full map (the mean of the two half maps), the FSC between the deformed
half maps and between the consensus half maps (unmasked, and masked with phase
randomisation when a mask is given), each full map's FSC against a reference map when one
is given (e.g. the simulation's ground truth: the motion's average, and the state the
deformed maps show, its mid state), and the FSC between the halves after every
iteration of the solve.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from dynamight_core.config_cli import add_file_argument

if TYPE_CHECKING:
    import numpy as np

    from dynamight_core.io.mrc import Volume

logger = logging.getLogger(__name__)

HELP = "FSC of the deformed half maps beside the consensus (and against a reference)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the comparison."""
    add_file_argument(parser, "--half-maps", "deformed half maps 1 and 2 (MRC)", nargs=2)
    add_file_argument(
        parser, "--iterations", "each half's maps per iteration (solve-deformed)", nargs=2
    )
    add_file_argument(parser, "--consensus-half-maps", "consensus half maps 1 and 2", nargs=2)
    add_file_argument(parser, "--consensus-full", "consensus full map")
    add_file_argument(
        parser, "--mask", "soft mask for the masked FSC [config: inputs.mask]", default=None
    )
    add_file_argument(
        parser,
        "--reference",
        "reference (e.g. ground-truth) map [config: inputs.reference_map]",
        default=None,
    )
    add_file_argument(
        parser,
        "--reference-state",
        "map of the state the deformed maps show, e.g. a simulation's mid state "
        "[config: inputs.reference_state]",
        default=None,
    )
    add_file_argument(
        parser,
        "--reference-states",
        "the state each half map is in (solve-deformed's reference_state.pt), for their agreement",
        nargs=2,
        default=None,
    )
    add_file_argument(parser, "--out-full", "deformed full map: the mean of the halves (MRC)")
    add_file_argument(parser, "--out-tsv", "FSC curves, one row per shell (TSV)")
    add_file_argument(parser, "--out-json", "resolutions and FSC areas (JSON)")
    add_file_argument(parser, "--out-png", "FSC plot (PNG)")
    add_file_argument(parser, "--out-summary", "the headline numbers (text)")


def _read_like(path: str, like: Volume, what: str) -> np.ndarray:
    """The data of the map at ``path``, checked to lie on ``like``'s grid."""
    from dynamight_core.io.mrc import check_same_grid, read_volume

    volume = read_volume(path)
    check_same_grid(volume, like, what)
    return volume.data


def run(args: argparse.Namespace) -> None:
    """Compute the curves and write the full map, table, summary and plot."""
    import numpy as np
    import pandas as pd
    import torch

    from dynamight_core.io.files import atomic_path, write_json_atomic, write_text_atomic
    from dynamight_core.io.mrc import (
        check_same_grid,
        read_half_maps,
        read_mask,
        read_volume,
        write_volume,
    )
    from dynamight_core.metrics.fsc import flatten_amplitudes, fsc, fsc_area, masked_fsc
    from dynamight_core.metrics.plots import plot_fsc

    deformed = list(read_half_maps(args.half_maps))
    consensus = list(read_half_maps(args.consensus_half_maps))
    consensus_full = read_volume(args.consensus_full)
    pixel, box = deformed[0].voxel_size_a, deformed[0].box_px
    for volume, name in zip(
        [*consensus, consensus_full],
        ["consensus half 1", "consensus half 2", "full"],
        strict=True,
    ):
        check_same_grid(volume, deformed[0], name)
    full = 0.5 * (deformed[0].data + deformed[1].data)
    write_volume(args.out_full, full, pixel)
    mask = read_mask(args.mask, deformed[0]).data if args.mask else None
    references = {
        name: _read_like(path, deformed[0], name)
        for name, path in (("reference", args.reference), ("state", args.reference_state))
        if path
    }
    curves: dict[str, np.ndarray] = {}
    entries: dict[str, dict[str, object]] = {}
    summary: dict[str, object] = {"pixel_size_a": pixel, "box_px": box}
    for label, halves, whole in (
        ("deformed", deformed, full),
        ("consensus", consensus, consensus_full.data),
    ):
        unmasked = fsc(halves[0].data, halves[1].data, pixel)
        curves[f"{label} halves"] = unmasked.fsc
        entry: dict[str, object] = {
            "resolution_0143_a": round(unmasked.resolution_at(0.143), 3),
            "resolution_05_a": round(unmasked.resolution_at(0.5), 3),
            "fsc_area": round(fsc_area(unmasked.fsc), 4),
        }
        if mask is not None:
            flat = flatten_amplitudes(halves[0].data, halves[1].data)  # as post-processing
            corrected = masked_fsc(flat[0], flat[1], mask, pixel).corrected
            curves[f"{label} halves, masked"] = corrected.fsc
            entry["masked_resolution_0143_a"] = round(corrected.resolution_at(0.143), 3)
        for name, reference in references.items():
            versus = fsc(whole, reference, pixel)
            curves[f"{label} full vs {name}"] = versus.fsc
            entry[f"full_vs_{name}_area"] = round(fsc_area(versus.fsc), 4)
            entry[f"full_vs_{name}_05_a"] = round(versus.resolution_at(0.5), 3)
            if mask is not None:
                inside = fsc(whole * mask, reference * mask, pixel)
                entry[f"full_vs_{name}_masked_area"] = round(fsc_area(inside.fsc), 4)
        summary[label] = entry
        entries[label] = entry
    iterations = [
        torch.load(path, map_location="cpu", weights_only=True)["maps"] for path in args.iterations
    ]
    per_iteration = []
    for number, (first, second) in enumerate(zip(*iterations, strict=False)):
        between = fsc(first.numpy(), second.numpy(), pixel)
        row = {
            "iteration": number,
            "halves_resolution_0143_a": round(between.resolution_at(0.143), 3),
            "halves_fsc_area": round(fsc_area(between.fsc), 4),
        }
        mean = 0.5 * (first.numpy() + second.numpy())
        for name, reference in references.items():
            row[f"full_vs_{name}_area"] = round(fsc_area(fsc(mean, reference, pixel).fsc), 4)
        per_iteration.append(row)
        logger.info("iteration %d: %s", number, row)
    summary["iterations"] = per_iteration
    if args.reference_states and mask is not None:
        summary["reference_states"] = reference_agreement(
            args.reference_states,
            (deformed[0].data, deformed[1].data),
            (consensus[0].data, consensus[1].data),
            mask,
            pixel,
        )
    resolution = fsc(full, full, pixel).resolution_a
    table = pd.DataFrame({"resolution_a": resolution, **curves})
    with atomic_path(args.out_tsv) as tmp:
        table.replace([np.inf], np.nan).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_json_atomic(args.out_json, summary)
    plot_fsc(
        args.out_png,
        resolution,
        curves,
        "FSC: deformed and consensus maps",
        marked=[name for name in curves if " halves" in name],
    )
    lines = []
    for label in ("consensus", "deformed"):
        entry = entries[label]
        text = (
            f"{label:>9}: half maps {entry['resolution_0143_a']:.2f} Å (FSC 0.143), "
            f"FSC area {entry['fsc_area']:.3f}"
        )
        for name in references:
            text += (
                f"; full map vs {name}: FSC area {entry[f'full_vs_{name}_area']:.3f}, "
                f"{entry[f'full_vs_{name}_05_a']:.2f} Å (FSC 0.5)"
            )
        lines.append(text)
        logger.info(text)
    if "reference_states" in summary:
        states = summary["reference_states"]
        assert isinstance(states, dict)
        text = (
            f"reference state ({states['reference']}): the deformed half maps' conformations "
            f"are {states['disagreement']['rms_a']:.2f} Å RMS apart (rigid part "
            f"{states['disagreement']['rigid_rms_a']:.2f} Å); the consensus half maps' "
            f"{states['consensus_disagreement']['rms_a']:.2f} Å (the measure's floor)"
        )
        lines.append(text)
        logger.info(text)
    write_text_atomic(args.out_summary, "\n".join(lines) + "\n")


def reference_agreement(
    paths: list[str],
    halves: tuple[np.ndarray, np.ndarray],
    consensus: tuple[np.ndarray, np.ndarray],
    mask: np.ndarray,
    pixel_size_a: float,
) -> dict[str, object]:
    """The half maps' reference state, how far their conformations are apart, each half's drift.

    The conformations are compared on the maps (``metrics/registration.py``); the consensus
    half maps, which show the same average by construction, give the measure's noise floor.

    Raises
    ------
    InputError
        When a file is not a reference state, both are of one half, or they were made with
        different ``deformed.reference`` settings.
    """
    from dynamight_core.metrics.registration import conformation_difference
    from dynamight_core.reconstruct.reference_state import drift_a

    states = read_reference_states(paths)
    return {
        "reference": states[0].kind,
        "disagreement": conformation_difference(*halves, mask, pixel_size_a).record(),
        "consensus_disagreement": conformation_difference(*consensus, mask, pixel_size_a).record(),
        "drift": {f"half{h}": drift_a(state) for h, state in zip((1, 2), states, strict=True)},
    }


def read_reference_states(paths: list[str]) -> list[Any]:
    """Half set 1's and 2's reference states (solve-deformed or state-maps), checked.

    Raises
    ------
    InputError
        When a file is not a reference state, both are of one half, or they were made with
        different references.
    """
    import torch

    from dynamight_core.errors import InputError
    from dynamight_core.reconstruct.reference_state import STATE_KIND, ReferenceState

    states, halves = [], []
    for path in paths:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("kind") != STATE_KIND:
            raise InputError(path, "kind", "a reference state from solve-deformed", "another file")
        states.append(ReferenceState.from_state(payload))
        halves.append(payload.get("half"))
    if halves != [1, 2]:
        raise InputError(paths[1], "half", "half set 1 then half set 2", f"halves {halves}")
    if states[0].kind != states[1].kind:
        raise InputError(paths[1], "reference", f"{states[0].kind} (as {paths[0]})", states[1].kind)
    return states
