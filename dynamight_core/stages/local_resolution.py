"""Stage ``local-resolution``: windowed local FSC of the consensus and the deformed maps.

Both pairs of half maps are measured with the same windows and mask, after flattening their
amplitudes (:func:`metrics.fsc.flatten_amplitudes`: a window, like a mask, would carry a
Wiener-filtered map's strong low frequencies into its filtered-out shells); the difference
map (consensus minus deformed, in Å: positive where the deformed map is finer) shows where
the motion correction gains. Runs on the GPU when one is visible.
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_section_arguments
from dynamight_core.stages.options import add_compute_arguments

logger = logging.getLogger(__name__)

HELP = "local resolution of the consensus and deformed maps, and the gain per region"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the local resolution."""
    add_file_argument(parser, "--consensus-half-maps", "consensus half maps 1 and 2", nargs=2)
    add_file_argument(parser, "--deformed-half-maps", "deformed half maps 1 and 2", nargs=2)
    add_file_argument(parser, "--mask", "soft mask (MRC) [config: inputs.mask, or make-mask's]")
    add_section_arguments(parser, "local_resolution")
    add_file_argument(parser, "--out-consensus", "consensus local resolution (MRC, Å)")
    add_file_argument(parser, "--out-deformed", "deformed local resolution (MRC, Å)")
    add_file_argument(parser, "--out-difference", "consensus minus deformed (MRC, Å)")
    add_file_argument(parser, "--out-json", "medians, quartiles and histograms (JSON)")
    add_file_argument(parser, "--out-png", "colour-coded slices and histograms (PNG)")
    add_compute_arguments(parser)


def describe(values_a: object) -> dict[str, float]:
    """Median and quartiles (Å) of the finite values of a local-resolution map."""
    import numpy as np

    finite = np.asarray(values_a)[np.isfinite(np.asarray(values_a))]
    quartiles = np.percentile(finite, [25, 50, 75])
    return {
        "median_a": round(float(quartiles[1]), 3),
        "p25_a": round(float(quartiles[0]), 3),
        "p75_a": round(float(quartiles[2]), 3),
    }


def run(args: argparse.Namespace) -> None:
    """Measure both pairs and write the maps, numbers and figure."""
    import numpy as np

    from dynamight_core.errors import InputError
    from dynamight_core.io.files import write_json_atomic
    from dynamight_core.io.mrc import check_volume_matches, read_volume, write_volume
    from dynamight_core.metrics.fsc import flatten_amplitudes
    from dynamight_core.metrics.local_resolution import local_resolution
    from dynamight_core.report.figures import plot_local_resolution
    from dynamight_core.stages.common import compute_device

    if args.window_px % 2:
        raise InputError(
            "--window-px", "local_resolution.window_px", "an even size", str(args.window_px)
        )
    device = compute_device(args)
    mask = read_volume(args.mask)
    pixel, box = mask.voxel_size_a, mask.box_px
    results = {}
    for label, paths in (
        ("consensus", args.consensus_half_maps),
        ("deformed", args.deformed_half_maps),
    ):
        halves = [read_volume(path) for path in paths]
        for half, path in zip(halves, paths, strict=True):
            check_volume_matches(half, box, pixel, f"{label} half map {path}")
        flat = flatten_amplitudes(halves[0].data, halves[1].data)
        results[label] = local_resolution(
            flat[0],
            flat[1],
            pixel,
            mask=mask.data,
            window_px=args.window_px,
            step_px=args.step_px,
            threshold=args.threshold,
            device=device,
        )
        logger.info("%s: local resolution %s", label, describe(results[label].map_a))
    consensus, deformed = results["consensus"].map_a, results["deformed"].map_a
    difference = consensus - deformed
    for path, values in (
        (args.out_consensus, consensus),
        (args.out_deformed, deformed),
        (args.out_difference, difference),
    ):
        write_volume(path, np.nan_to_num(values, nan=0.0), pixel)
    edges = np.linspace(2.0 * pixel, float(np.nanmax([consensus, deformed])), 31)
    summary = {
        "window_px": args.window_px,
        "step_px": args.step_px,
        "threshold": args.threshold,
        "outside_mask_value": 0.0,
        "consensus": describe(consensus),
        "deformed": describe(deformed),
        "gain": describe(difference),
        "finer_fraction": round(float(np.mean(difference[np.isfinite(difference)] > 0)), 4),
        "histogram_edges_a": [round(float(edge), 3) for edge in edges],
        "histogram_consensus": np.histogram(consensus[np.isfinite(consensus)], edges)[0].tolist(),
        "histogram_deformed": np.histogram(deformed[np.isfinite(deformed)], edges)[0].tolist(),
    }
    write_json_atomic(args.out_json, summary)
    plot_local_resolution(
        args.out_png, {"consensus": consensus, "deformed": deformed}, difference, 2.0 * pixel
    )
