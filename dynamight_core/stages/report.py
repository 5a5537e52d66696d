"""Stage ``report``: one self-contained HTML page and ``summary.json`` for the whole run.

Is the map better (post-processing of the consensus, deformed and null-control half maps
with one mask, local resolution), is the motion real (the null control, the half sets'
disagreement per region, a negative control when given), the latent space, warnings, and
the inputs, configuration and provenance. Reads only what other stages wrote.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from dynamight_core.config_cli import add_file_argument, add_section_arguments

logger = logging.getLogger(__name__)

HELP = "the validation report: HTML page and summary.json"

LABELS = ("consensus", "deformed", "null")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Inputs (other stages' outputs) and outputs of the report."""
    for kind, text in (("json", "numbers"), ("png", "figure"), ("tsv", "curves")):
        add_file_argument(
            parser,
            f"--postprocess-{kind}",
            f"post-processing {text} of the consensus, deformed and (optionally) null maps",
            nargs="+",
        )
    add_file_argument(parser, "--local-resolution-json", "local-resolution numbers")
    add_file_argument(parser, "--local-resolution-png", "local-resolution figure")
    add_file_argument(parser, "--deformation-error-json", "half sets' disagreement (JSON)")
    add_file_argument(parser, "--deformation-error-png", "motion and error on the model")
    add_file_argument(
        parser, "--gaussians-tsv", "motion, error and region per pseudo-atom (deformation-error)"
    )
    add_file_argument(
        parser,
        "--local-resolution-maps",
        "consensus and deformed local-resolution maps (MRC)",
        nargs=2,
    )
    add_file_argument(parser, "--latent-json", "each half set's latent PCA (JSON)", nargs=2)
    add_file_argument(parser, "--latent-png", "each half set's latent figure", nargs=2)
    add_file_argument(parser, "--displacement-png", "each half set's displacements", nargs=2)
    add_file_argument(parser, "--training-png", "each half set's training curves", nargs=2)
    add_file_argument(parser, "--movie-gif", "each half set's movie along PC1 (GIF)", nargs=2)
    add_file_argument(parser, "--movie-json", "each half set's movie record (JSON)", nargs=2)
    add_file_argument(parser, "--maps-json", "each half set's maps along PC1 (JSON)", nargs=2)
    add_file_argument(parser, "--fsc-deformed-png", "comparison with references (PNG)")
    add_file_argument(
        parser,
        "--fsc-deformed-json",
        "fsc-deformed's numbers: the half maps' reference states and their agreement",
        default=None,
    )
    add_file_argument(parser, "--provenance", "the run's provenance record (JSON)")
    add_file_argument(parser, "--mask", "the mask every masked number used (MRC)")
    add_file_argument(
        parser,
        "--half-maps",
        "the two half maps of the consensus, deformed and (optionally) null reconstructions, "
        "in that order (MRC; their means are shown in sections and projections)",
        nargs="+",
    )
    add_file_argument(
        parser,
        "--mask-json",
        "make-mask's record of that mask (JSON; its warning, e.g. a sphere on a map of noise, "
        "goes into the report)",
        default=None,
    )
    add_file_argument(
        parser,
        "--negative-control",
        "summary.json of a run on data without motion [config: report.negative_control]",
        default=None,
    )
    add_section_arguments(
        parser,
        "report",
        only=(
            "significance_z",
            "state_disagreement_fraction",
            "min_gain_fsc_area",
            "min_motion_fraction",
            "moving_region_fraction",
        ),
    )
    add_section_arguments(parser, "split", only=("min_particles_per_half",))
    add_section_arguments(parser, "postprocess", only=("randomise_at_fsc",))
    add_file_argument(parser, "--out-html", "the report (HTML, self-contained)")
    add_file_argument(parser, "--out-summary", "the report's numbers (JSON)")
    add_file_argument(parser, "--out-gain-png", "corrected masked FSC of every map (PNG)")
    add_file_argument(
        parser, "--out-maps-png", "central sections and projections of every full map (PNG)"
    )
    add_file_argument(parser, "--out-text", "the verdict, the maps' numbers, warnings (text)")


def _resolution_text(resolution_a: float | None) -> str:
    return "no resolution" if resolution_a is None else f"{resolution_a:.2f} Å"


def headline(summary: dict[str, Any]) -> str:
    """The verdict, one line per map, and the warnings, as printed by ``make demo``."""
    lines = [summary["gain"]["verdict"]]
    region = summary["gain"].get("moving_region")
    for label, values in summary["maps"].items():
        resolution, bfactor = values["resolution_0143_a"], values["bfactor_a2"]
        there = (
            f"; where it moves {_resolution_text(region['resolution_0143_a'][label])}, "
            f"area {region['masked_fsc_area'][label]:.4f}"
            if region
            else ""
        )
        lines.append(
            f"{label:>9}: {_resolution_text(resolution)}"
            + f" (masked, FSC 0.143), masked FSC area {values['masked_fsc_area']:.4f} ± "
            f"{values['masked_fsc_area_se']:.4f}, "
            + ("no B-factor" if bfactor is None else f"B {bfactor:.0f} Å²")
            + there
        )
    lines += [f"warning: {warning}" for warning in summary["warnings"]]
    return "\n".join(lines) + "\n"


def _region_local_resolution(args: argparse.Namespace) -> dict[int, dict[str, float]]:
    """Median local resolution of each map at each motion region's pseudo-atoms."""
    import pandas as pd

    from dynamight_core.io.mrc import read_volume
    from dynamight_core.report.motion import region_local_resolution

    table = pd.read_csv(args.gaussians_tsv, sep="\t")
    volumes = [read_volume(path) for path in args.local_resolution_maps]
    return region_local_resolution(
        table[["x_a", "y_a", "z_a"]].to_numpy(),
        table["region"].to_numpy(),
        {label: v.data for label, v in zip(("consensus", "deformed"), volumes, strict=True)},
        volumes[0].voxel_size_a,
    )


def _moving_region(
    args: argparse.Namespace,
    consensus_resolution_a: float | None,
    pairs: dict[str, tuple[Any, Any]],
    mask: Any,
) -> dict[str, Any] | None:
    """Every pair's numbers where it moves (report/moving_region.py); ``None``: no region.

    ``pairs``: label -> its two `(D, D, D)` half maps.
    """
    import pandas as pd

    from dynamight_core.report.moving_region import moving_region
    from dynamight_core.report.postprocessing import PostprocessSettings

    if consensus_resolution_a is None or args.moving_region_fraction <= 0:
        return None
    return moving_region(
        pd.read_csv(args.gaussians_tsv, sep="\t"),
        consensus_resolution_a,
        args.moving_region_fraction,
        mask.data,
        mask.voxel_size_a,
        pairs,
        PostprocessSettings(randomise_at_fsc=args.randomise_at_fsc),
    )


def _read_json(path: str) -> Any:
    import json

    from dynamight_core.errors import InputError

    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise InputError(path, "file", "a JSON file written by this workflow", str(error)) from None


def run(args: argparse.Namespace) -> None:
    """Gather the stages' outputs, decide on the gain, write the page and the numbers."""
    from dataclasses import replace

    import pandas as pd

    from dynamight_core.errors import InputError
    from dynamight_core.io.files import write_json_atomic, write_text_atomic
    from dynamight_core.io.identity import check_negative_control, check_postprocessed_pairs
    from dynamight_core.io.mrc import read_volume
    from dynamight_core.metrics.plots import plot_fsc
    from dynamight_core.report.figures import plot_map_sections
    from dynamight_core.report.page import build_page, figure_paths
    from dynamight_core.report.summary import ReportInputs, build_summary

    count = len(args.postprocess_json)
    if (
        count not in (2, 3)
        or len(args.postprocess_png) != count
        or len(args.postprocess_tsv) != count
    ):
        raise InputError(
            "--postprocess-json",
            "files",
            "2 or 3 of each kind (consensus, deformed[, null])",
            str(count),
        )
    labels = LABELS[:count]
    if len(args.half_maps) != 2 * count:
        raise InputError(
            "--half-maps",
            "files",
            f"{2 * count}: two half maps of each of {', '.join(labels)}",
            str(len(args.half_maps)),
        )
    post = {
        label: _read_json(path) for label, path in zip(labels, args.postprocess_json, strict=True)
    }
    split = check_postprocessed_pairs(dict(zip(labels, args.postprocess_json, strict=True)), post)
    provenance = _read_json(args.provenance)
    negative = _read_json(args.negative_control) if args.negative_control else None
    if negative is not None and "gain" not in negative:
        raise InputError(
            args.negative_control, "gain", "a summary.json of this workflow", "no 'gain'"
        )
    if negative is not None:
        check_negative_control(args.negative_control, negative, split)
    inputs = ReportInputs(
        postprocessed=post,
        local_resolution=_read_json(args.local_resolution_json),
        deformation_error=_read_json(args.deformation_error_json),
        latent={
            f"half{h}": _read_json(path) for h, path in zip((1, 2), args.latent_json, strict=True)
        },
        significance_z=args.significance_z,
        negative_control=negative,
        atomic_model=provenance.get("config", {}).get("inputs", {}).get("atomic_model"),
        reference_states=(
            _read_json(args.fsc_deformed_json).get("reference_states")
            if args.fsc_deformed_json
            else None
        ),
        state_disagreement_fraction=args.state_disagreement_fraction,
        min_gain_fsc_area=args.min_gain_fsc_area,
        min_motion_fraction=args.min_motion_fraction,
    )
    mask = read_volume(args.mask)
    halves = [read_volume(path).data for path in args.half_maps]
    pairs = {
        label: (halves[2 * index], halves[2 * index + 1]) for index, label in enumerate(labels)
    }
    inputs = replace(
        inputs,
        region_local_resolution=_region_local_resolution(args),
        moving_region=_moving_region(args, post["consensus"]["resolution_0143_a"], pairs, mask),
    )
    summary = build_summary(inputs, {"pixel_size_a": mask.voxel_size_a, "box_px": mask.box_px})
    summary["origin"] = {"split": split}
    for half, record in inputs.latent.items():
        particles = record.get("particles")
        if particles is not None and particles < args.min_particles_per_half:
            summary["warnings"].append(
                f"{half}: {particles} particles, fewer than split.min_particles_per_half "
                f"({args.min_particles_per_half}): its latent space, motions and FSC are "
                "dominated by noise"
            )
    if args.mask_json:
        made = _read_json(args.mask_json)
        summary["mask"] = {key: made.get(key) for key in ("fallback", "volume_fraction")}
        if made.get("warning"):
            summary["warnings"].append(made["warning"])
    tables = {
        label: pd.read_csv(path, sep="\t")
        for label, path in zip(labels, args.postprocess_tsv, strict=True)
    }
    resolution = tables["consensus"]["resolution_a"].to_numpy()
    plot_fsc(
        args.out_gain_png,
        resolution,
        {label: table["fsc_corrected"].to_numpy() for label, table in tables.items()},
        "Half-map FSC inside the mask (phase-randomisation corrected)",
    )
    plot_map_sections(
        args.out_maps_png,
        {label: 0.5 * (one + two) for label, (one, two) in pairs.items()},
        mask.data,
        mask.voxel_size_a,
    )
    page = build_page(summary, figure_paths(args), provenance, labels)
    write_json_atomic(args.out_summary, summary)
    write_text_atomic(args.out_html, page)
    write_text_atomic(args.out_text, headline(summary))
    logger.info("%s", summary["gain"]["verdict"])
    for warning in summary["warnings"]:
        logger.warning("%s", warning)
