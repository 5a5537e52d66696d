"""Stage ``make-mask``: a soft mask around the consensus map, when the user gave none.

As ``relion_mask_create``: the consensus full map low-passed, thresholded (automatically
from its noise level unless ``postprocess.mask_threshold`` is set), grown and given a soft
edge. Post-processing, the masked FSCs and local resolution of every map use this one mask.
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_section_arguments

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
    from dynamight_core.io.files import write_json_atomic
    from dynamight_core.io.mrc import read_volume, write_volume
    from dynamight_core.metrics.sharpening import mask_from_consensus

    volume = read_volume(args.map)
    made = mask_from_consensus(
        volume.data,
        volume.voxel_size_a,
        threshold=args.mask_threshold,
        lowpass_a=args.mask_lowpass_a,
        extend_a=args.mask_extend_a,
        soft_edge_a=args.mask_soft_edge_a,
    )
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
