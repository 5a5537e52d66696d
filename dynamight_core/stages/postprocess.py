"""Stage ``postprocess``: RELION-style post-processing of one pair of half maps.

Run for the consensus, the deformed and the null control's half maps with the same mask,
so that their masked FSCs, resolutions and B-factors compare like with like.
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_run_argument, add_section_arguments

logger = logging.getLogger(__name__)

HELP = "masked FSC with phase randomisation, Guinier B-factor and a sharpened map"

SETTINGS = ("randomise_at_fsc", "guinier_from_a", "bfactor_a2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the post-processing."""
    add_file_argument(parser, "--half-maps", "half maps 1 and 2 (MRC)", nargs=2)
    add_file_argument(parser, "--mask", "soft mask (MRC) [config: inputs.mask, or make-mask's]")
    add_section_arguments(parser, "postprocess", only=SETTINGS)
    add_run_argument(parser, "--label", "name of the maps in titles", default="maps")
    add_file_argument(parser, "--out-sharpened", "sharpened, masked full map (MRC)")
    add_file_argument(parser, "--out-tsv", "FSC curves and Guinier plot, one row per shell (TSV)")
    add_file_argument(parser, "--out-json", "resolution, FSC areas, B-factor (JSON)")
    add_file_argument(parser, "--out-png", "FSC and Guinier plots (PNG)")


def run(args: argparse.Namespace) -> None:
    """Post-process and write the map, table, numbers and figure."""
    import numpy as np
    import pandas as pd

    from dynamight_core.io.files import atomic_path, write_json_atomic
    from dynamight_core.io.identity import check_label_matches_origin, origin_record
    from dynamight_core.io.mrc import read_half_maps, read_mask, write_volume
    from dynamight_core.report.figures import plot_postprocess
    from dynamight_core.report.postprocessing import PostprocessSettings, postprocess

    first, second = read_half_maps(args.half_maps)
    check_label_matches_origin(args.label, first)
    pixel, box = first.voxel_size_a, first.box_px
    mask = read_mask(args.mask, first)
    settings = PostprocessSettings(**{key: getattr(args, key) for key in SETTINGS})
    result = postprocess(first.data, second.data, mask.data, pixel, settings)
    write_volume(args.out_sharpened, result.sharpened, pixel)
    curves = result.curves
    guinier = result.guinier
    shells = curves.unmasked.shells[1:].astype(np.float64)
    table = pd.DataFrame(
        {
            "shell": curves.unmasked.shells,
            "resolution_a": curves.unmasked.resolution_a,
            "fsc_unmasked": curves.unmasked.fsc,
            "fsc_masked": curves.masked.fsc,
            "fsc_randomised": curves.randomised_masked.fsc,
            "fsc_corrected": curves.corrected.fsc,
            "squared_frequency_a2": np.r_[0.0, (shells / (box * pixel)) ** 2],
            "guinier_log_amplitude": np.r_[
                np.nan, np.full(shells.size, np.nan) if guinier is None else guinier.log_amplitude
            ],
            "guinier_fitted": np.r_[
                False, np.zeros(shells.size, bool) if guinier is None else guinier.fitted
            ],
        }
    )
    with atomic_path(args.out_tsv) as tmp:
        table.replace([np.inf], np.nan).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    summary = {
        "label": args.label,
        "half_maps": origin_record(first),
        "pixel_size_a": pixel,
        "box_px": box,
        **result.summary(),
    }
    write_json_atomic(args.out_json, summary)
    plot_postprocess(args.out_png, result, args.label)
    logger.info(
        "%s: %s at FSC 0.143 (masked, corrected; unmasked %s), B %s",
        args.label,
        _or_none(summary["resolution_0143_a"], "%.2f Å"),
        _or_none(summary["unmasked_resolution_0143_a"], "%.2f Å"),
        _or_none(summary["bfactor_a2"], "%.1f Å^2"),
    )
    if summary["resolution_0143_a"] is None:
        logger.warning(
            "%s: no resolution (recorded as null in %s): the half maps do not correlate "
            "beyond the first shells; the map was not sharpened",
            args.label,
            args.out_json,
        )


def _or_none(value: object, form: str) -> str:
    """``value`` in ``form``, or ``"none"`` when it was not measured."""
    return "none" if value is None else form % value
