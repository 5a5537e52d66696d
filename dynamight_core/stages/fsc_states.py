"""Stage ``fsc-states``: the two half maps of each chosen state, their FSC and full map.

Reads both halves' ``state-maps`` records, checks that they name the same states (same
percentiles, each half's own maps), writes each state's full map (the mean of the halves)
and, per state, the FSC between the halves (unmasked; masked with phase randomisation
when a mask is given), and, with a mask, how far the two halves' maps of the state are
apart in conformation (``metrics/registration.py``).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from dynamight_core.config_cli import add_file_argument, add_run_argument

logger = logging.getLogger(__name__)

HELP = "FSC and full maps of the states both half sets reconstructed (state-maps)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the comparison."""
    add_file_argument(parser, "--states", "half set 1's and 2's states.json (state-maps)", nargs=2)
    add_file_argument(
        parser, "--mask", "soft mask for the masked FSC [config: inputs.mask]", default=None
    )
    add_run_argument(parser, "--out-dir", "folder of the states' full maps", required=True)
    add_file_argument(parser, "--out-json", "per state: resolution, FSC areas, agreement (JSON)")
    add_file_argument(parser, "--out-summary", "one line per state (text)")


def run(args: argparse.Namespace) -> None:
    """Compare the halves' maps of every state."""
    import json
    from pathlib import Path

    from dynamight_core.errors import InputError
    from dynamight_core.io.files import write_json_atomic, write_text_atomic
    from dynamight_core.io.mrc import read_half_maps, read_mask, write_volume
    from dynamight_core.metrics.fsc import flatten_amplitudes, fsc, fsc_area, masked_fsc
    from dynamight_core.metrics.registration import conformation_difference
    from dynamight_core.stages.fsc_deformed import read_reference_states
    from dynamight_core.stages.state_maps import STATES_KIND

    records = [json.loads(Path(path).read_text()) for path in args.states]
    for half, (record, path) in enumerate(zip(records, args.states, strict=True), start=1):
        if record.get("kind") != STATES_KIND or record.get("half") != half:
            raise InputError(path, "half", f"state-maps' record of half set {half}", "another")
    first, second = (record["states"] for record in records)
    if [s["percentile"] for s in first] != [s["percentile"] for s in second]:
        raise InputError(
            args.states[1],
            "states",
            f"the percentiles of {args.states[0]}",
            str([s["percentile"] for s in second]),
        )
    mask = None
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folders = [Path(path).parent for path in args.states]
    results, lines = [], []
    for one, two in zip(first, second, strict=True):
        pair = list(zip(folders, (one, two), strict=True))
        maps = read_half_maps([folder / s["map"] for folder, s in pair])
        pixel = maps[0].voxel_size_a
        if args.mask and mask is None:
            mask = read_mask(args.mask, maps[0]).data
        full = 0.5 * (maps[0].data + maps[1].data)
        name = f"state_{one['index']:02d}.mrc"
        write_volume(out / name, full, pixel)
        curve = fsc(maps[0].data, maps[1].data, pixel)
        read_reference_states([str(folder / s["reference"]) for folder, s in pair])
        entry: dict[str, Any] = {
            "percentile": one["percentile"],
            "map": name,
            "resolution_0143_a": round(curve.resolution_at(0.143), 3),
            "fsc_area": round(fsc_area(curve.fsc), 4),
        }
        if mask is not None:
            difference = conformation_difference(maps[0].data, maps[1].data, mask, pixel)
            entry["agreement"] = difference.record()
            flat = flatten_amplitudes(maps[0].data, maps[1].data)
            corrected = masked_fsc(flat[0], flat[1], mask, pixel).corrected
            entry["masked_resolution_0143_a"] = round(corrected.resolution_at(0.143), 3)
            entry["masked_fsc_area"] = round(fsc_area(corrected.fsc), 4)
        results.append(entry)
        apart = entry.get("agreement", {}).get("rms_a")
        lines.append(
            f"state {one['index']} (PC1 percentile {one['percentile']:g}): half maps "
            f"{entry['resolution_0143_a']:.2f} Å (FSC 0.143)"
            + ("" if apart is None else f", their conformations {apart:.2f} Å RMS apart")
        )
        logger.info(lines[-1])
    write_json_atomic(args.out_json, {"states": results})
    write_text_atomic(args.out_summary, "\n".join(lines) + "\n")
