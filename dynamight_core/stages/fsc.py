"""Stage ``fsc``: half-map FSC (unmasked and masked with phase randomisation), resolution."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from dynamight_core.config_cli import add_file_argument, add_run_argument

if TYPE_CHECKING:
    from dynamight_core.metrics.fsc import FscCurve

logger = logging.getLogger(__name__)

HELP = "FSC between half maps (optionally masked, and against a reference map)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the FSC stage."""
    add_file_argument(parser, "--half1", "half map 1 (MRC)")
    add_file_argument(parser, "--half2", "half map 2 (MRC)")
    add_file_argument(
        parser, "--mask", "soft mask for the masked FSC [config: inputs.mask]", default=None
    )
    add_file_argument(parser, "--full", "full map, compared with --reference", default=None)
    add_file_argument(
        parser,
        "--reference",
        "reference (e.g. ground-truth) map [config: inputs.reference_map]",
        default=None,
    )
    add_run_argument(parser, "--label", "name used in titles and tables", default="consensus")
    add_file_argument(parser, "--out-tsv", "FSC curves, one row per shell (TSV)")
    add_file_argument(parser, "--out-json", "resolutions (JSON)")
    add_file_argument(parser, "--out-png", "FSC plot (PNG)")


def _summary(curve: FscCurve) -> dict[str, float]:
    return {
        "resolution_0143_a": round(curve.resolution_at(0.143), 3),
        "resolution_05_a": round(curve.resolution_at(0.5), 3),
    }


def run(args: argparse.Namespace) -> None:
    """Compute the curves and write the table, the summary and the plot."""
    import numpy as np
    import pandas as pd

    from dynamight_core.io.files import atomic_path, write_json_atomic
    from dynamight_core.io.mrc import check_same_grid, read_half_maps, read_mask, read_volume
    from dynamight_core.metrics.fsc import (
        expected_correlation_with_truth,
        flatten_amplitudes,
        fsc,
        masked_fsc,
    )
    from dynamight_core.metrics.plots import plot_fsc

    half1, half2 = read_half_maps([args.half1, args.half2])
    pixel, box = half1.voxel_size_a, half1.box_px
    unmasked = fsc(half1.data, half2.data, pixel)
    table = pd.DataFrame(
        {
            "shell": unmasked.shells,
            "resolution_a": unmasked.resolution_a,
            "n_voxels": unmasked.n_voxels,
            "fsc_unmasked": unmasked.fsc,
        }
    )
    summary: dict[str, object] = {
        "label": args.label,
        "pixel_size_a": pixel,
        "box_px": box,
        "unmasked": _summary(unmasked),
    }
    curves = {"unmasked": unmasked.fsc}
    headline = unmasked
    if args.mask:
        mask = read_mask(args.mask, half1)
        # on flattened shells, as post-processing: our half maps are Wiener-filtered
        flat = flatten_amplitudes(half1.data, half2.data)
        result = masked_fsc(flat[0], flat[1], mask.data, pixel)
        table["fsc_masked"] = result.masked.fsc
        table["fsc_phase_randomised"] = result.randomised_masked.fsc
        table["fsc_corrected"] = result.corrected.fsc
        summary["masked_corrected"] = _summary(result.corrected)
        summary["phase_randomised_from_a"] = round(
            float(unmasked.resolution_a[min(result.randomised_from_shell, len(unmasked.fsc) - 1)]),
            3,
        )
        curves["masked, corrected"] = result.corrected.fsc
        headline = result.corrected
    if args.reference and args.full:
        full, reference = read_volume(args.full), read_volume(args.reference)
        for volume, name in ((full, "full map"), (reference, "reference")):
            check_same_grid(volume, half1, name)
        versus = fsc(full.data, reference.data, pixel)
        table["fsc_full_vs_reference"] = versus.fsc
        table["expected_from_halves"] = expected_correlation_with_truth(unmasked.fsc)
        summary["full_vs_reference"] = _summary(versus)
        curves["full vs reference"] = versus.fsc
    summary["resolution_0143_a"] = round(headline.resolution_at(0.143), 3)
    summary["resolution_05_a"] = round(headline.resolution_at(0.5), 3)
    logger.info(
        "%s: %.2f Å (FSC 0.143), %.2f Å (FSC 0.5)",
        args.label,
        summary["resolution_0143_a"],
        summary["resolution_05_a"],
    )
    with atomic_path(args.out_tsv) as tmp:
        table.replace([np.inf], np.nan).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    write_json_atomic(args.out_json, summary)
    plot_fsc(
        args.out_png,
        unmasked.resolution_a,
        curves,
        f"FSC: {args.label}",
        marked=[name for name in curves if "reference" not in name],
    )
