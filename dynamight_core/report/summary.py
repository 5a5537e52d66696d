"""The numbers of the validation report and the verdict on the gain.

Every number comes from a file a stage wrote (post-processing of each pair of half maps,
local resolution, the half sets' disagreement, the latent PCA), so that each can be
recomputed from the maps and tables alone. Gains are differences of masked,
phase-randomisation-corrected FSC areas (mean FSC over shells 1 .. Nyquist), in units of
their standard error (a block jackknife over Fourier sectors of the paired difference,
:func:`_difference`). Two questions, each answered yes, no or inconclusive by
:mod:`dynamight_core.report.verdict` (significance and an effect that matters): is the
motion real (the deformed maps beat the null control, the same reconstruction with
shuffled latents: a gain the null also shows is not the motion's; and the decoded motion
is large enough for the resolution), and is the map better (the deformed maps beat the
consensus). The gain is significant when both answers are yes.

Half maps without a resolution (post-processing wrote ``resolution_0143_a: null``, e.g.
pure noise) support no claim: the verdict is "no resolution / no gain", whatever their
FSC areas say, and the numbers that need a resolution are ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dynamight_core.metrics.fsc import jackknife_standard_error
from dynamight_core.report.verdict import (
    YES,
    Floors,
    corrected_z,
    looks,
    map_answer,
    motion_answer,
    next_step,
    null_as_good,
    tested,
    verdict_text,
)

MAP_KEYS = (
    "resolution_0143_a",
    "unmasked_resolution_0143_a",
    "masked_fsc_area",
    "masked_fsc_area_se",
    "unmasked_fsc_area",
    "bfactor_a2",
)


@dataclass(frozen=True)
class ReportInputs:
    """What the report reads, as parsed JSON (``None`` for what the run did not make)."""

    postprocessed: Mapping[str, Mapping[str, Any]]  # consensus, deformed[, null]
    local_resolution: Mapping[str, Any]
    deformation_error: Mapping[str, Any]
    latent: Mapping[str, Mapping[str, Any]]  # half1, half2
    significance_z: float
    negative_control: Mapping[str, Any] | None = None
    atomic_model: str | None = None
    # region -> local-resolution map label -> median (Å) at the region's pseudo-atoms
    region_local_resolution: Mapping[int, Mapping[str, float]] | None = None
    # fsc-deformed's reference_states: the state both half maps are in and its agreement
    reference_states: Mapping[str, Any] | None = None
    state_disagreement_fraction: float = 0.1
    min_gain_fsc_area: float = 0.002
    min_motion_fraction: float = 0.1
    # report/moving_region.py: each pair's numbers where it moves (None: no moving region)
    moving_region: Mapping[str, Any] | None = None


def _difference(first: Mapping[str, Any], second: Mapping[str, Any]) -> dict[str, float]:
    """Gain of ``first`` over ``second`` in masked FSC area, its standard error and z.

    The error is the block jackknife's of the paired difference: both maps' areas with the
    same Fourier sector left out, so that what the two maps share (the particles' noise)
    cancels, as it does in the difference itself.
    """
    gain = first["masked_fsc_area"] - second["masked_fsc_area"]
    paired = np.subtract(first["masked_fsc_area_jackknife"], second["masked_fsc_area_jackknife"])
    error = jackknife_standard_error(paired)
    return {
        "fsc_area": round(gain, 6),
        "se": round(error, 6),
        "z": round(gain / max(error, 1e-12), 3),
    }


def _comparisons(maps: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Deformed over consensus and, with a null control, over the null and null over consensus.

    ``maps``: label -> post-processing numbers (over the whole mask or where it moves).
    """
    comparisons = {"over_consensus": _difference(maps["deformed"], maps["consensus"])}
    if "null" in maps:
        comparisons["over_null"] = _difference(maps["deformed"], maps["null"])
        comparisons["null_over_consensus"] = _difference(maps["null"], maps["consensus"])
    return comparisons


def _maps(inputs: ReportInputs) -> dict[str, dict[str, float]]:
    maps = {
        label: {key: values[key] for key in MAP_KEYS}
        for label, values in inputs.postprocessed.items()
    }
    for label in ("consensus", "deformed"):
        maps[label]["local_resolution_median_a"] = inputs.local_resolution[label]["median_a"]
    return maps


def _change(first: float | None, second: float | None) -> float | None:
    """``first - second`` rounded to 3 decimals; ``None`` when either is missing."""
    if first is None or second is None:
        return None
    return round(first - second, 3)


def unresolved(postprocessed: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The labels of the post-processed maps without a resolution (``null`` in the JSON)."""
    return [label for label, values in postprocessed.items() if values["resolution_0143_a"] is None]


def _gain(inputs: ReportInputs) -> dict[str, Any]:
    post = inputs.postprocessed
    consensus, deformed = post["consensus"], post["deformed"]
    local = inputs.local_resolution
    gain: dict[str, Any] = {
        **_comparisons(post),
        "resolution_change_a": _change(
            consensus["resolution_0143_a"], deformed["resolution_0143_a"]
        ),
        "local_resolution_median_change_a": _change(
            local["consensus"]["median_a"], local["deformed"]["median_a"]
        ),
        "local_resolution_finer_fraction": local["finer_fraction"],
    }
    floors = Floors(inputs.significance_z, inputs.min_gain_fsc_area, inputs.min_motion_fraction)
    missing = [label for label in unresolved(post) if label in ("consensus", "deformed")]
    gain["unresolved"] = missing
    region = _moving_region(inputs)
    if region is not None:
        gain["moving_region"] = region
    gain["significance_z"] = floors.significance_z
    gain["significance_z_per_look"] = round(corrected_z(floors.significance_z, len(looks(gain))), 3)
    gain["min_gain_fsc_area"] = floors.min_gain_fsc_area
    gain["min_motion_fraction"] = floors.min_motion_fraction
    resolution = deformed["resolution_0143_a"] or consensus["resolution_0143_a"]
    motion = motion_answer(gain, inputs.deformation_error, resolution, floors)
    better = map_answer(gain, floors, motion)
    gain["answers"] = {"motion_real": motion.record(), "map_better": better.record()}
    gain["map_better"] = better.answer == YES
    if "null" in post:
        gain["motion_real"] = motion.answer == YES
    gain["significant"] = bool(gain["map_better"] and gain.get("motion_real", True))
    gain["next_step"] = next_step(motion, better, missing)
    gain["verdict"] = verdict_text(motion, better, gain["next_step"], missing)
    return gain


def _moving_region(inputs: ReportInputs) -> dict[str, Any] | None:
    """The region, each map's resolution there and the gains there (``None``: no region)."""
    region = inputs.moving_region
    if region is None:
        return None
    maps = region["maps"]
    summary: dict[str, Any] = {
        key: region[key]
        for key in ("threshold_a", "radius_a", "gaussians", "of_gaussians", "mask_fraction")
    }
    for key in ("resolution_0143_a", "masked_fsc_area"):
        summary[key] = {label: values[key] for label, values in maps.items()}
    summary.update(_comparisons(maps))
    return summary


def _motion(inputs: ReportInputs) -> dict[str, Any]:
    error = inputs.deformation_error
    regions = [dict(row) for row in error["regions"]]
    local = inputs.region_local_resolution or {}
    for row in regions:
        medians = local.get(row["region"])
        if medians is None:
            continue
        row["local_resolution_consensus_a"] = medians["consensus"]
        row["local_resolution_deformed_a"] = medians["deformed"]
        row["local_resolution_gain_a"] = round(medians["consensus"] - medians["deformed"], 3)
    return {
        "median_motion_a": error["median_motion_a"],
        "median_error_a": error["median_error_a"],
        "regions": regions,
    }


def _latent(inputs: ReportInputs) -> dict[str, Any]:
    """Each half's explained variance and how half set 2's PC1 is oriented (or ``None``)."""
    summary: dict[str, Any] = {
        half: {
            "explained_variance_pc1": values["explained_variance"][0],
            "explained_variance_pc2": values["explained_variance"][1]
            if len(values["explained_variance"]) > 1
            else 0.0,
        }
        for half, values in inputs.latent.items()
    }
    orientation = inputs.latent["half2"].get("pc1_orientation")
    summary["pc1_orientation"] = (
        {key: orientation[key] for key in ("sign", "agreement", "aligned")} if orientation else None
    )
    return summary


def warnings(summary: Mapping[str, Any], inputs: ReportInputs) -> list[str]:
    """What a careful user should know before trusting the maps."""
    notes = []
    if inputs.atomic_model:
        notes.append(
            f"An atomic model ({inputs.atomic_model}) replaced the smoothness graph: the "
            "motions are biased towards it; validate them against a run without it."
        )
    motion = summary["motion"]
    if motion["median_error_a"] >= motion["median_motion_a"]:
        notes.append(
            f"The half sets disagree on the motion by {motion['median_error_a']:.2f} Å, as much "
            f"as the motion itself ({motion['median_motion_a']:.2f} Å): it is not resolved."
        )
    # regions that move less than the moving region's threshold are the rigid part: their
    # decoded motion is noise by definition, and no question is answered there
    moving_a = (summary["gain"].get("moving_region") or {}).get("threshold_a", 0.0)
    unreliable = [
        row["region"]
        for row in motion["regions"]
        if row["error_over_motion"] >= 1.0 and row["motion_rms_a"] >= moving_a
    ]
    if unreliable:
        notes.append(
            "Regions whose motion error is at least their motion: "
            + ", ".join(str(r) for r in unreliable)
            + "."
        )
    gain = summary["gain"]
    for label in unresolved(inputs.postprocessed):
        notes.append(
            f"The {label} half maps have no resolution (post-processing recorded none): "
            "they hold no signal the FSC can detect; check the particles, the CTF and the mask."
        )
    if "null_over_consensus" in gain:
        if null_as_good(tested(gain)[0]):
            notes.append(
                "The null control (shuffled latents) scores as well as the real run: the "
                "gain over the consensus does not come from the estimated motion."
            )
    else:
        notes.append("The null control was not run (report.null_control: false).")
    notes += _state_warnings(summary)
    orientation = summary["latent"].get("pc1_orientation")
    if orientation and not orientation["aligned"]:
        notes.append(
            f"The half sets' PC1 agree on the motion by only {orientation['agreement']:.2f} "
            "(cosine of their decoded displacement fields): they are not one motion, so half "
            "set 2's latent figures keep their own sign; select and compare each half on its own."
        )
    return notes


def _reference_state(inputs: ReportInputs, resolution_a: float | None) -> dict[str, Any] | None:
    """The half maps' reference state, how far apart their conformations are, and the limit."""
    states = inputs.reference_states
    if not states:
        return None
    apart = states["disagreement"]
    if resolution_a is None:
        limit = None
        agree = None
    else:
        # never below the measure's own floor: the consensus half maps, one state by
        # construction, are that far apart for it (a sharp map at a fine resolution can
        # put the floor above the fraction of the resolution)
        floor = states["consensus_disagreement"]["rms_a"]
        limit = round(max(inputs.state_disagreement_fraction * resolution_a, floor), 4)
        agree = bool(max(apart["rms_a"], apart["rigid_rms_a"]) <= limit)
    return {
        "reference": states["reference"],
        "disagreement_rms_a": apart["rms_a"],
        "disagreement_p95_a": apart["p95_a"],
        "disagreement_rigid_rms_a": apart["rigid_rms_a"],
        "consensus_disagreement_rms_a": states["consensus_disagreement"]["rms_a"],
        "drift": states["drift"],
        "limit_a": limit,
        "agree": agree,
    }


def _state_warnings(summary: Mapping[str, Any]) -> list[str]:
    state = summary.get("reference_state")
    if state is None:
        return ["The half maps' reference states were not compared (no fsc-deformed record)."]
    if state["agree"] is None:
        return [
            "The half maps' reference states were not judged: the deformed maps have no "
            "resolution to compare their disagreement with."
        ]
    if state["agree"]:
        return []
    return [
        f"The two deformed half maps are in different conformations: they are "
        f"{state['disagreement_rms_a']:.2f} Å RMS apart (rigid part "
        f"{state['disagreement_rigid_rms_a']:.2f} Å; the consensus half maps "
        f"{state['consensus_disagreement_rms_a']:.2f} Å), more than {state['limit_a']:.2f} Å "
        "(report.state_disagreement_fraction of the resolution, or the consensus half maps' "
        "distance when larger). Their FSC then measures the "
        "mismatch as well as the noise and understates the maps; check deformed.reference "
        "(mean is the default)."
    ]


def build_summary(inputs: ReportInputs, geometry: Mapping[str, Any]) -> dict[str, Any]:
    """The report's numbers: maps, gain and verdict, motion, latent space, warnings."""
    summary: dict[str, Any] = {
        "pixel_size_a": geometry["pixel_size_a"],
        "box_px": geometry["box_px"],
        "maps": _maps(inputs),
        "gain": _gain(inputs),
        "motion": _motion(inputs),
        "latent": _latent(inputs),
    }
    state = _reference_state(inputs, summary["maps"]["deformed"]["resolution_0143_a"])
    if state is not None:
        summary["reference_state"] = state
    if inputs.negative_control is not None:
        control = inputs.negative_control
        summary["negative_control"] = {
            "gain_over_consensus": control["gain"]["over_consensus"],
            "significant": control["gain"]["significant"],
            "verdict": control["gain"]["verdict"],
        }
    summary["warnings"] = warnings(summary, inputs)
    return summary
