"""The report's sections, in the order a user asks: better map? real motion? then how."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dynamight_core.report.html import Page, gain_table, json_text, maps_table, regions_table

Figures = Mapping[str, Any]


def _better_map(
    page: Page, summary: Mapping[str, Any], figures: Figures, labels: Sequence[str]
) -> None:
    page.heading("Is the map better?")
    page.paragraph(
        "Each pair of half maps is post-processed with the same mask (written beside the "
        f"maps: {figures['mask']}): FSC between the halves inside the mask, corrected for "
        "the mask's own correlation by phase randomisation, resolution at FSC 0.143, "
        "Guinier B-factor. The FSC area is the mean FSC over every shell up to Nyquist."
    )
    _reference_state(page, summary)
    maps_table(page, summary["maps"])
    _moving_region(page, summary["gain"].get("moving_region"))
    gain_table(page, summary["gain"])
    page.figure(
        figures["maps"],
        "The full maps (each the mean of its two half maps), one row each: central sections "
        "normal to z, y and x with the mask's 0.5 contour in orange, and the projection along "
        "z. Grey scale per row: the three sections share the map's 0.5 and 99.5 percentiles; "
        "the projection has its own. Axes in Å from the box's corner.",
    )
    page.figure(
        figures["gain"], "Corrected masked FSC between the half maps of each reconstruction."
    )
    for label, png in zip(labels, figures["postprocess"], strict=True):
        page.figure(png, f"Post-processing of the {label} half maps: FSC curves and Guinier plot.")
    page.figure(
        figures["references_png"],
        "FSC of the deformed and consensus maps between halves and against the reference "
        "maps given in the configuration (inputs.reference_map, inputs.reference_state).",
    )
    page.heading("Local resolution", 3)
    change, maps = summary["gain"], summary["maps"]
    page.paragraph(
        f"Median local resolution {_angstrom(maps['consensus']['local_resolution_median_a'])} "
        f"(consensus) and {_angstrom(maps['deformed']['local_resolution_median_a'])} "
        f"(deformed); the deformed map is finer in "
        f"{100 * change['local_resolution_finer_fraction']:.0f}% of the masked voxels."
    )
    page.figure(
        figures["local_resolution"],
        "Local resolution (windowed FSC at the threshold) on the central sections, and the "
        "gain (consensus minus deformed, Å; positive where the deformed map is finer), with "
        "the full map's contour in black (the level enclosing half its density); axes in Å "
        "from the box's corner.",
    )


def _moving_region(page: Page, region: Mapping[str, Any] | None) -> None:
    """Where it moves: the region the questions are answered in, and each map there."""
    if region is None:
        page.paragraph(
            "No moving region: too few pseudo-atoms move report.moving_region_fraction of the "
            "consensus resolution, so both questions are answered over the whole mask."
        )
        return
    resolution = region["resolution_0143_a"]
    shown = ", ".join(f"{label} {_angstrom(value)}" for label, value in resolution.items())
    page.paragraph(
        f"Where it moves: the mask times a soft region within {region['radius_a']:.2f} Å (the "
        f"consensus resolution) of the {region['gaussians']} of {region['of_gaussians']} "
        f"pseudo-atoms whose decoded RMS motion is {region['threshold_a']:.2f} Å or more "
        f"({100 * region['mask_fraction']:.0f}% of the mask). There the consensus blurs what "
        "moves, and both questions are answered there; over the whole mask a rigid part that "
        f"every map shows alike dilutes the gain. Resolution (FSC 0.143) there: {shown}."
    )


def _angstrom(value: float | None) -> str:
    """``value`` as ``"1.23 Å"``, or ``"none"`` when it was not measured."""
    return "none" if value is None else f"{value:.2f} Å"


def _reference_state(page: Page, summary: Mapping[str, Any]) -> None:
    state = summary.get("reference_state")
    if state is None:
        return
    drift = state["drift"]
    moved = ", ".join(
        f"{half} {values['trained_from_fit_rms_a']:.2f} Å" for half, values in drift.items()
    )
    page.paragraph(
        f"Both deformed half maps are reconstructed in one conformation, each from its own "
        f"half set: deformed.reference {state['reference']}. Registered onto each other "
        f"(low-passed to 10 Å, a smooth displacement field fitted), the two half maps' "
        f"conformations are {state['disagreement_rms_a']:.2f} Å RMS apart over the density "
        f"(95th percentile {state['disagreement_p95_a']:.2f} Å; rigid part "
        f"{state['disagreement_rigid_rms_a']:.2f} Å; warning above {_angstrom(state['limit_a'])}). "
        f"The consensus half maps, one average by construction, give the measure's floor: "
        f"{state['consensus_disagreement_rms_a']:.2f} Å. Training moved each half's consensus "
        f"pseudo-atoms (RMS from its consensus fit): {moved}."
    )


def _not_shown_real(gain: Mapping[str, Any]) -> str | None:
    """A warning that the motion shown is not shown to be real, or ``None`` when it is."""
    if gain.get("motion_real") and not gain.get("unresolved"):
        return None
    if gain.get("unresolved"):
        why = "the half maps have no resolution, so nothing shows a motion in the data"
    elif "answers" in gain:
        answer = gain["answers"]["motion_real"]
        why = f"the answer is {answer['answer']}: {answer['reason']}"
    elif "motion_real" in gain:
        why = "the deformed maps do not beat the null control (shuffled latents)"
    else:
        why = "the null control was not run"
    return (
        f"The motion is not shown to be real: {why}. The motions, movies and maps along PC1 "
        "below are what the model decoded, not evidence of a motion."
    )


def _real_motion(page: Page, summary: Mapping[str, Any], figures: Figures) -> None:
    page.heading("Is the motion real?")
    gain = summary["gain"]
    caveat = _not_shown_real(gain)
    if caveat:
        page.paragraph(caveat, "warning")
    if "over_null" in gain:
        page.paragraph(
            "Null control: the same deformed reconstruction with each particle's latent "
            "replaced by a random other particle's from the same half set. If the motion is "
            "real, its gain collapses: null over consensus "
            f"{gain['null_over_consensus']['fsc_area']:+.4f} against "
            f"{gain['over_consensus']['fsc_area']:+.4f} for the real run."
        )
    else:
        page.paragraph("The null control was not run (report.null_control: false).")
    motion = summary["motion"]
    page.paragraph(
        "Reliability of the motion: the two half sets, trained independently, read the same "
        "held-out particles; their disagreement estimates the motion's error. Median over "
        f"particles: motion {motion['median_motion_a']:.2f} Å, "
        f"error {motion['median_error_a']:.2f} Å."
    )
    region = gain.get("moving_region")
    if region:
        page.paragraph(
            f"Regions whose RMS motion is below {region['threshold_a']:.2f} Å (the moving "
            "region's threshold) are the rigid part: their decoded motion is at the level of "
            "its error, and the report warns only about regions that move more."
        )
    regions_table(page, motion["regions"])
    page.figure(figures["deformation_error"], "RMS motion and RMS error of each pseudo-atom.")
    control = summary.get("negative_control")
    page.heading("Negative control (data without motion)", 3)
    if control is None:
        page.paragraph(
            "None given: run this workflow on data without motion and name its summary.json "
            "in report.negative_control to show it here."
        )
    else:
        page.paragraph(
            f"Gain over the consensus {control['gain_over_consensus']['fsc_area']:+.4f} "
            f"({control['gain_over_consensus']['z']:.1f} standard errors). {control['verdict']}"
        )


def _orientation_text(orientation: Mapping[str, Any]) -> str:
    """How half set 2's PC1 is shown against half set 1's, in words."""
    agreement = orientation["agreement"]
    if not orientation["aligned"]:
        return (
            f"The two half sets' PC1 agree on the motion by only {agreement:.2f} (cosine of "
            "their decoded displacement fields, latent/alignment.json): they are not one "
            "motion, and each half set's PC1 below keeps its own, arbitrary sign."
        )
    flipped = (
        "is multiplied by -1 so that it runs"
        if orientation["sign"] < 0
        else "already runs (its sign is kept)"
    )
    return (
        f"Half set 2's PC1 {flipped} the same way as half set 1's: their "
        f"decoded displacement fields agree with a cosine of {agreement:.2f} "
        "(latent/alignment.json). The latent figures, movies and maps along PC1 below start "
        "at the same end of the motion in both half sets; only this sign, taken from the "
        "decoded motion, crosses between the halves."
    )


def _latent(page: Page, summary: Mapping[str, Any], figures: Figures) -> None:
    page.heading("Latent space")
    caveat = _not_shown_real(summary["gain"])
    if caveat:
        page.paragraph(caveat, "warning")
    orientation = summary["latent"].get("pc1_orientation")
    if orientation:
        css = None if orientation["aligned"] else "warning"
        page.paragraph(_orientation_text(orientation), css)
    for index, half in enumerate(("half1", "half2")):
        values = summary["latent"][half]
        page.heading(f"Half set {index + 1}", 3)
        page.paragraph(
            f"PC1 explains {100 * values['explained_variance_pc1']:.0f}% and PC2 "
            f"{100 * values['explained_variance_pc2']:.0f}% of the latent variance."
        )
        page.figure(
            figures["latent"][index],
            "Latent means on PC1 and PC2 (density, log scale) and the half set's model "
            "projected (along the axis in each panel's title, the one PC1 moves it least in) "
            "at -2 .. +2 standard deviations along each.",
        )
        page.figure(figures["displacement"][index], "RMS displacement of each pseudo-atom.")
        movie, maps = figures["movie_records"][index], figures["maps_records"][index]
        page.figure(
            figures["movie"][index],
            f"The half set's model along {movie['path']} ({len(movie['frames'])} frames, "
            "projections along z | y | x). In explore/half"
            f"{index + 1}/: movie/movie.cxc opens the frames in ChimeraX as a volume series "
            f"with the pseudo-atoms; pc1/maps.cxc the {len(maps['maps'])} maps at "
            f"{maps['points']}; pseudo_atoms.cif/.pdb the consensus and those states as "
            f"pseudo-atoms (B-factor: {maps['bfactor']}, Å).",
        )
        page.figure(figures["training"][index], "Training and validation curves.")


def _provenance(page: Page, provenance: Mapping[str, Any]) -> None:
    page.heading("Inputs, configuration and provenance")
    code = provenance.get("code", {})
    page.paragraph(
        f"dynamight_core {provenance.get('dynamight_core')}, commit {code.get('commit')}"
        f"{' (with uncommitted changes)' if code.get('dirty') else ''}; written "
        f"{provenance.get('written_utc')} on {provenance.get('host')}."
    )
    page.table(
        ["input", "sha256"],
        [[name, digest] for name, digest in sorted(provenance.get("inputs_sha256", {}).items())],
    )
    page.collapsed("Configuration (click to open)", json_text(provenance.get("config", {})))
    page.collapsed(
        "Packages and seeds (click to open)",
        json_text({"packages": provenance.get("packages"), "seeds": provenance.get("seeds")}),
    )


def build_page(
    summary: Mapping[str, Any],
    figures: Figures,
    provenance: Mapping[str, Any],
    labels: Sequence[str],
) -> str:
    """The whole report as one HTML document."""
    page = Page("DynaMight validation report")
    page.paragraph(
        summary["gain"]["verdict"],
        "verdict good" if summary["gain"]["significant"] else "verdict bad",
    )
    for warning in summary["warnings"]:
        page.paragraph(warning, "warning")
    _better_map(page, summary, figures, labels)
    _real_motion(page, summary, figures)
    _latent(page, summary, figures)
    _provenance(page, provenance)
    return page.render()


def figure_paths(args: Any) -> dict[str, Any]:
    """The report stage's figure arguments, by section."""
    return {
        "mask": Path(args.mask).name,
        "gain": args.out_gain_png,
        "maps": args.out_maps_png,
        "postprocess": args.postprocess_png,
        "references_png": args.fsc_deformed_png,
        "local_resolution": args.local_resolution_png,
        "deformation_error": args.deformation_error_png,
        "latent": args.latent_png,
        "displacement": args.displacement_png,
        "training": args.training_png,
        "movie": args.movie_gif,
        "movie_records": [json.loads(Path(p).read_text()) for p in args.movie_json],
        "maps_records": [json.loads(Path(p).read_text()) for p in args.maps_json],
    }
