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


def describe(values_a: object) -> dict[str, float | None]:
    """Median and quartiles (Å) of the finite values of a local-resolution map.

    ``None`` for each when the map has no finite value (no window inside the mask).
    """
    import numpy as np

    finite = np.asarray(values_a)[np.isfinite(np.asarray(values_a))]
    if finite.size == 0:
        return {"median_a": None, "p25_a": None, "p75_a": None}
    quartiles = np.percentile(finite, [25, 50, 75])
    return {
        "median_a": round(float(quartiles[1]), 3),
        "p25_a": round(float(quartiles[0]), 3),
        "p75_a": round(float(quartiles[2]), 3),
    }


def check_window(window_px: int, box_px: int) -> None:
    """Fail unless the window (px) is even, at least the smallest usable one and fits the box.

    Raises
    ------
    InputError
        Naming ``local_resolution.window_px``, the allowed range and the value given.
    """
    from dynamight_core.errors import InputError
    from dynamight_core.metrics.local_resolution import WINDOW_EDGE_PX

    smallest = int(2 * WINDOW_EDGE_PX + 2)
    if window_px % 2 or not smallest <= window_px <= box_px:
        raise InputError(
            "--window-px",
            "local_resolution.window_px",
            f"an even size from {smallest} px to the maps' box ({box_px} px)",
            f"{window_px} px",
        )


RESOLVED_WINDOW_SHELLS = 2.0
"""A window resolves its region when its FSC crossing lies beyond this window shell."""


def resolved_fraction(values_a: object, window_a: float) -> float:
    """Fraction of the finite voxels finer than half the window (Å).

    A window whose FSC starts below the threshold reads the window size itself
    (:mod:`dynamight_core.metrics.local_resolution`), and pure noise crosses in the first
    window shells by chance: as post-processing's ``MIN_RESOLVED_SHELLS``, only a crossing
    beyond window shell ``RESOLVED_WINDOW_SHELLS`` counts. Near 0 for maps without signal.
    """
    import numpy as np

    values = np.asarray(values_a)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0
    return round(float(np.mean(finite <= window_a / RESOLVED_WINDOW_SHELLS)), 4)


def run(args: argparse.Namespace) -> None:
    """Measure both pairs and write the maps, numbers and figure."""
    import numpy as np

    from dynamight_core.io.files import write_json_atomic
    from dynamight_core.io.mrc import check_same_grid, read_half_maps, read_mask, write_volume
    from dynamight_core.metrics.fsc import flatten_amplitudes
    from dynamight_core.metrics.local_resolution import local_resolution
    from dynamight_core.report.figures import plot_local_resolution
    from dynamight_core.stages.common import compute_device

    pairs = {
        "consensus": read_half_maps(args.consensus_half_maps),
        "deformed": read_half_maps(args.deformed_half_maps),
    }
    first = pairs["consensus"][0]
    pixel, box = first.voxel_size_a, first.box_px
    check_same_grid(pairs["deformed"][0], first, "deformed half map 1")
    check_window(args.window_px, box)
    mask = read_mask(args.mask, first)
    device = compute_device(args)
    full_maps = {label: 0.5 * (one.data + two.data) for label, (one, two) in pairs.items()}
    results = {}
    for label, halves in pairs.items():
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
    window_a = args.window_px * pixel
    both = np.stack([consensus, deformed])
    top = float(np.max(both[np.isfinite(both)], initial=2.0 * pixel))
    edges = np.linspace(2.0 * pixel, top if top > 2.0 * pixel else window_a, 31)
    finite_difference = difference[np.isfinite(difference)]
    resolved = {
        label: resolved_fraction(values, window_a)
        for label, values in (("consensus", consensus), ("deformed", deformed))
    }
    for label, fraction in resolved.items():
        logger.info(
            "%s: %.0f%% of the masked voxels are finer than half the window (%.1f Å)",
            label,
            100 * fraction,
            window_a / RESOLVED_WINDOW_SHELLS,
        )
        if fraction == 0.0:
            logger.warning(
                "%s: no local resolution: no window's FSC stays above %g beyond its first "
                "shells (the maps hold no signal the windows can detect)",
                label,
                args.threshold,
            )
    summary = {
        "window_px": args.window_px,
        "step_px": args.step_px,
        "threshold": args.threshold,
        "outside_mask_value": 0.0,
        "consensus": describe(consensus),
        "deformed": describe(deformed),
        "gain": describe(difference),
        "finer_fraction": round(float(np.mean(finite_difference > 0)), 4)
        if finite_difference.size
        else 0.0,
        "resolved_fraction": resolved,
        "histogram_edges_a": [round(float(edge), 3) for edge in edges],
        "histogram_consensus": np.histogram(consensus[np.isfinite(consensus)], edges)[0].tolist(),
        "histogram_deformed": np.histogram(deformed[np.isfinite(deformed)], edges)[0].tolist(),
    }
    write_json_atomic(args.out_json, summary)
    plot_local_resolution(
        args.out_png,
        {"consensus": consensus, "deformed": deformed},
        difference,
        2.0 * pixel,
        densities=full_maps,
    )
