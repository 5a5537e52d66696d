"""Stage ``make-mask``: a soft mask around the consensus map, when the user gave none.

As ``relion_mask_create``: the consensus full map low-passed, thresholded (automatically
from its noise level unless ``postprocess.mask_threshold`` is set), grown and given a soft
edge. Post-processing, the masked FSCs and local resolution of every map use this one mask.

A consensus map in which the automatic threshold finds no density (pure noise, no particle)
gets a soft sphere instead (:func:`~dynamight_core.metrics.sharpening.spherical_fallback_mask`),
with a warning in the log and in the JSON (``fallback``, ``warning``) that the report shows:
the run goes on to a report that says the maps have no resolution. An explicit
``postprocess.mask_threshold`` that leaves nothing, or a map without any density (constant),
is bad input (exit code 2).
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from dynamight_core.config_cli import add_file_argument, add_section_arguments

if TYPE_CHECKING:
    from dynamight_core.metrics.sharpening import EmptyMaskError

logger = logging.getLogger(__name__)

HELP = "soft mask from the consensus map (threshold, growth, soft edge)"

MASK_KEYS = ("mask_threshold", "mask_lowpass_a", "mask_extend_a", "mask_soft_edge_a")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the mask."""
    add_file_argument(parser, "--map", "consensus full map (MRC)")
    add_section_arguments(parser, "postprocess", only=MASK_KEYS)
    add_file_argument(parser, "--out-mask", "the soft mask (MRC)")
    add_file_argument(parser, "--out-json", "threshold and settings used (JSON)")


def run(args: argparse.Namespace) -> None:
    """Make and write the mask."""
    import numpy as np

    from dynamight_core.errors import InputError
    from dynamight_core.io.files import write_json_atomic
    from dynamight_core.io.mrc import read_volume, write_volume
    from dynamight_core.metrics.sharpening import EmptyMaskError, mask_from_consensus

    volume = read_volume(args.map)
    try:
        made = mask_from_consensus(
            volume.data,
            volume.voxel_size_a,
            threshold=args.mask_threshold,
            lowpass_a=args.mask_lowpass_a,
            extend_a=args.mask_extend_a,
            soft_edge_a=args.mask_soft_edge_a,
        )
    except EmptyMaskError as empty:
        if args.mask_threshold is None and float(np.ptp(volume.data)) > 0.0:
            _write_fallback(args, volume.data.shape[0], volume.voxel_size_a, empty)
            return
        raise InputError(
            args.map,
            "postprocess.mask_threshold",
            f"density above the threshold {empty.threshold:.4g} in the map low-passed at "
            f"{empty.lowpass_a:g} Å",
            f"none: its maximum is {empty.maximum:.4g}",
            "Set postprocess.mask_threshold below that maximum (null: the automatic level, "
            "which falls back to a sphere on a map of noise), or give a mask (inputs.mask)",
        ) from None
    write_volume(args.out_mask, made.mask, volume.voxel_size_a)
    summary = {
        "source": str(args.map),
        "threshold": float(made.threshold),
        "lowpass_a": made.lowpass_a,
        "extend_a": made.extend_a,
        "soft_edge_a": made.soft_edge_a,
        "volume_fraction": round(float(made.volume_fraction), 5),
    }
    write_json_atomic(args.out_json, summary)
    logger.info(
        "mask at threshold %.4g of the %.0f Å low-passed map: %.1f%% of the box",
        made.threshold,
        made.lowpass_a,
        100 * made.volume_fraction,
    )


def _write_fallback(
    args: argparse.Namespace, box_px: int, pixel_size_a: float, empty: EmptyMaskError
) -> None:
    """Write the soft sphere (module docstring) and a JSON that says why it is one."""
    from dynamight_core.io.files import write_json_atomic
    from dynamight_core.io.mrc import write_volume
    from dynamight_core.metrics.sharpening import spherical_fallback_mask

    mask = spherical_fallback_mask(box_px, pixel_size_a, args.mask_soft_edge_a)
    fraction = float((mask >= 0.5).mean())
    warning = (
        f"The automatic mask found no density in the consensus map {args.map} (low-passed "
        f"at {empty.lowpass_a:g} Å, nothing above its noise level {empty.threshold:.4g}; "
        f"maximum {empty.maximum:.4g}): the map looks like pure noise. A soft sphere "
        f"({100 * fraction:.0f}% of the box) was used instead; every masked number measures "
        "that sphere, not a particle. Check the particles, or give a mask (inputs.mask)."
    )
    logger.warning("%s", warning)
    write_volume(args.out_mask, mask, pixel_size_a)
    summary = {
        "source": str(args.map),
        "threshold": None,
        "lowpass_a": float(args.mask_lowpass_a),
        "extend_a": float(args.mask_extend_a),
        "soft_edge_a": float(args.mask_soft_edge_a),
        "volume_fraction": round(fraction, 5),
        "fallback": "sphere",
        "warning": warning,
    }
    write_json_atomic(args.out_json, summary)
