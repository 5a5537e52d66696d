"""The report's two questions, each answered yes, no or inconclusive, and what to do next.

A test statistic alone is no verdict: 3 standard errors on a +0.0001 gain in masked FSC
area, or on a motion of 0.004 Å, is real and irrelevant. Each answer needs both:

- **significance**: the gain in corrected masked FSC area is at least ``significance_z``
  of its standard error (block jackknife of the paired difference);
- **an effect that matters**: the gain is at least ``min_gain_fsc_area``, and for the
  motion, the decoded motion of the most mobile region (RMS over its pseudo-atoms) is at
  least ``min_motion_fraction`` of the map's resolution. A displacement of 0.1 of the
  resolution ``d`` turns the phase at the resolution shell by 36° (``2 pi 0.1``), a 19% drop
  of the FSC there: the least change a half-map FSC at that resolution can see; a smaller
  motion leaves the deformed map the consensus.

Both gains are measured **where it moves** when the run has a moving region
(:mod:`~dynamight_core.report.moving_region`): inside the mask, around the pseudo-atoms
whose decoded motion is at least ``report.moving_region_fraction`` of the consensus
resolution, where the consensus blurs; over the whole mask, a rigid core that both maps
show alike dilutes the gain. A gain there with a significant loss over the whole mask is
"inconclusive".

"yes": significant, large enough, and no warning that contradicts it (the half sets
disagree on the motion as much as it moves; the null control scores as well as the real
run). "no": significant but below the floor, significantly worse, or a gain that the
data exclude (its upper bound, gain + z x error, is below the floor), or a motion below the
resolvable floor. "inconclusive": neither (the data cannot tell), or a "yes" contradicted by
a warning, with the reason. Half maps without a resolution answer "no" to both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

YES, NO, INCONCLUSIVE = "yes", "no", "inconclusive"


@dataclass(frozen=True)
class Answer:
    """One question's answer (``yes``, ``no`` or ``inconclusive``) and why, in plain words.

    ``unresolvable``: the motion is below what the data resolve (the deformed map is then
    the consensus, whatever the noise in its FSC says).
    """

    answer: str
    reason: str
    unresolvable: bool = False

    def record(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


@dataclass(frozen=True)
class Floors:
    """What a gain must reach to matter, besides its significance.

    Attributes
    ----------
    significance_z
        Standard errors a gain must reach.
    min_gain_fsc_area
        Least gain in corrected masked FSC area.
    min_motion_fraction
        Least RMS motion of the most mobile region, as a fraction of the resolution.
    """

    significance_z: float
    min_gain_fsc_area: float
    min_motion_fraction: float


def tested(gain: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The differences the questions are answered on, and where they were measured.

    Inside the moving region (:mod:`~dynamight_core.report.moving_region`) when the run has
    one, else over the whole mask.
    """
    region = gain.get("moving_region")
    if region is None:
        return gain, "in the mask"
    return region, (
        f"where it moves ({100 * region['mask_fraction']:.0f}% of the mask, around the "
        f"pseudo-atoms moving {region['threshold_a']:.2f} Å RMS or more)"
    )


def _gain_answer(
    difference: Mapping[str, float], floors: Floors, against: str, where: str = "in the mask"
) -> Answer:
    """yes/no/inconclusive for one FSC-area ``difference`` (fsc_area, se, z) over ``against``."""
    gain, se, z = difference["fsc_area"], difference["se"], difference["z"]
    shown = f"{gain:+.4f} in masked FSC area {where} over {against}, {z:.1f} standard errors"
    floor, threshold = floors.min_gain_fsc_area, floors.significance_z
    if z >= threshold and gain >= floor:
        return Answer(YES, shown)
    if z >= threshold:
        return Answer(NO, f"{shown}: significant, but below {floor:g}, too small to matter")
    if z <= -threshold:
        return Answer(NO, f"{shown}: significantly worse")
    if gain + threshold * se < floor:
        return Answer(NO, f"{shown}: a gain of {floor:g} or more is excluded")
    return Answer(INCONCLUSIVE, f"{shown}: the data cannot tell a gain of {floor:g} from none")


def map_answer(gain: Mapping[str, Any], floors: Floors, motion: Answer) -> Answer:
    """The answer to "is the deformed map better than the consensus?".

    Answered where it moves (:func:`tested`). With a ``motion`` below what the data
    resolve the answer is "no", whatever the FSC says: the deformed map is then the
    consensus reconstructed another way (on a motion-free demo the deformed pipeline's own
    reconstruction scored +0.013 over the consensus's, 9 standard errors). A gain where it
    moves with a significant loss over the whole mask is "inconclusive": better in one
    place, worse in another.
    """
    if gain.get("unresolved"):
        return Answer(
            NO, "the " + " and ".join(gain["unresolved"]) + " half maps have no resolution"
        )
    scope, where = tested(gain)
    answer = _gain_answer(scope["over_consensus"], floors, "the consensus", where)
    if motion.unresolvable and answer.answer != NO:
        return Answer(
            NO,
            f"{answer.reason}; with no resolvable motion the deformed map is the consensus "
            "reconstructed another way, and any difference is the reconstruction's, not a "
            "motion's",
        )
    whole = gain["over_consensus"]
    if answer.answer == YES and scope is not gain and whole["z"] <= -floors.significance_z:
        return Answer(
            INCONCLUSIVE,
            f"{answer.reason}, but over the whole mask it is worse ({whole['fsc_area']:+.4f}, "
            f"{whole['z']:.1f} standard errors): compare the local resolution",
        )
    return answer


def motion_answer(
    gain: Mapping[str, Any],
    motion: Mapping[str, Any],
    resolution_a: float | None,
    floors: Floors,
) -> Answer:
    """The answer to "is the motion real?": beats the null control, large enough, consistent."""
    if gain.get("unresolved"):
        return Answer(
            NO, "the " + " and ".join(gain["unresolved"]) + " half maps have no resolution"
        )
    moving = max((row["motion_rms_a"] for row in motion["regions"]), default=None)
    if moving is None:
        moving = motion["median_motion_a"]
    if resolution_a is not None:
        floor_a = floors.min_motion_fraction * resolution_a
        if moving < floor_a:
            return Answer(
                NO,
                f"the decoded motion ({moving:.2f} Å RMS in the most mobile region) is below "
                f"{floor_a:.2f} Å ({floors.min_motion_fraction:g} of the {resolution_a:.1f} Å "
                "resolution): below what this data can resolve",
                unresolvable=True,
            )
    if "over_null" not in gain:
        return Answer(INCONCLUSIVE, "not tested: no null control (report.null_control: false)")
    scope, where = tested(gain)
    answer = _gain_answer(scope["over_null"], floors, "the null control", where)
    if answer.answer != YES:
        return answer
    if motion["median_error_a"] >= motion["median_motion_a"]:
        return Answer(
            INCONCLUSIVE,
            f"{answer.reason}, but the half sets disagree on the motion "
            f"({motion['median_error_a']:.2f} Å) as much as it moves "
            f"({motion['median_motion_a']:.2f} Å)",
        )
    null, real = scope["null_over_consensus"], scope["over_consensus"]
    if null["fsc_area"] >= real["fsc_area"] - real["se"]:
        return Answer(
            INCONCLUSIVE,
            f"{answer.reason}, but the null control scores as well as the real run over the "
            "consensus",
        )
    return answer


def next_step(motion: Answer, better: Answer, unresolved: list[str]) -> str:
    """One line: what the user should do with this run."""
    if unresolved:
        return (
            "check the particles (poses, CTF), the mask and the box: the half maps hold no "
            "signal the FSC can detect"
        )
    if motion.answer == YES and better.answer == YES:
        return (
            "use deformed/half1.mrc and deformed/half2.mrc in RELION PostProcess with your mask "
            "(deformed/full.mrc is their mean), and explore the motion (explore maps, movie, "
            "select)"
        )
    if motion.answer == YES:
        return (
            "the motion is real but the map gains little: explore it (explore maps, movie, "
            "select) and keep the consensus map; more particles or longer training "
            "(vae.max_epochs) may sharpen the deformed maps"
        )
    if motion.unresolvable:
        return "the motion is below what this data can resolve: keep the consensus map"
    if motion.answer == NO:
        return "no motion this method can use was found: keep the consensus map"
    return (
        "train longer (vae.max_epochs), use more particles, or check that the mask covers the "
        "moving region, then run again"
    )


def verdict_text(motion: Answer, better: Answer, step: str, unresolved: list[str]) -> str:
    """The headline: the two answers with their reasons, and the next step."""
    head = "No resolution / no gain: " if unresolved else ""
    return (
        f"{head}Is the motion real? {motion.answer} ({motion.reason}). "
        f"Is the map better? {better.answer} ({better.reason}). Next: {step}."
    )
