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

Both gains are measured in two places when the run has a moving region
(:mod:`~dynamight_core.report.moving_region`): **where it moves** (inside the mask, around
the pseudo-atoms whose decoded motion is at least ``report.moving_region_fraction`` of the
consensus resolution, where the consensus blurs) and **over the whole mask**. Neither alone
answers every run: over the whole mask a rigid core that both maps show alike dilutes the
gain, and where it moves the region is small, so its error is large (on cryoJAX T4
lysozyme, 3 seeds: +0.0092, +0.0022, +0.0134 over the whole mask at 3.3, 1.1, 5.1 standard
errors; +0.051, +0.076, +0.067 where it moves at 2.3, 4.5, 3.2; the truth saw +0.044 in
every seed). A question is answered "yes" when either look shows the gain at the
threshold corrected for two looks (Bonferroni: 3.21 standard errors for 3, so that the
chance of a false "yes" stays that of one look) and neither shows a significant loss; a
gain in one place with a significant loss in the other is "inconclusive".

"yes": significant, large enough, and no warning that contradicts it (the half sets
disagree on the motion as much as it moves; the null control scores as well as the real
run). "no": significant but below the floor, significantly worse, or a gain that the
data exclude (its upper bound, gain + z x error, is below the floor), or a motion below the
resolvable floor. "inconclusive": neither (the data cannot tell), or a "yes" contradicted by
a warning, with the reason. Half maps without a resolution answer "no" to both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from statistics import NormalDist
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


def looks(gain: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], str]]:
    """Where a question is answered: where it moves (when the run has a region), the mask."""
    whole = (gain, "in the mask")
    return [tested(gain), whole] if gain.get("moving_region") is not None else [whole]


def corrected_z(z: float, n_looks: int) -> float:
    """The threshold for ``n_looks`` one-sided tests whose family errs as often as one at ``z``.

    Bonferroni: each look's tail probability is ``1 / n_looks`` of ``z``'s (3 -> 3.21 for 2).
    """
    normal = NormalDist()
    return normal.inv_cdf(1.0 - (1.0 - normal.cdf(z)) / n_looks)


def _looked_answer(
    gain: Mapping[str, Any], key: str, floors: Floors, against: str
) -> tuple[Answer, list[Mapping[str, Any]]]:
    """yes/no/inconclusive for the difference ``key`` over ``against``, from every look.

    "yes" when a look shows a significant gain that matters and no look a significant
    loss; "inconclusive" when one does and another shows a loss; else "no" when a look
    shows a loss or every look says "no", "inconclusive" otherwise. Also returns the
    looks (their numbers) that said "yes".
    """
    places = looks(gain)
    threshold = corrected_z(floors.significance_z, len(places))
    corrected = replace(floors, significance_z=threshold)
    answers = [_gain_answer(scope[key], corrected, against, where) for scope, where in places]
    scopes = [scope for scope, _ in places]
    worse = [a for scope, a in zip(scopes, answers, strict=True) if scope[key]["z"] <= -threshold]
    yes = [(scope, a) for scope, a in zip(scopes, answers, strict=True) if a.answer == YES]
    if yes and worse:
        return Answer(INCONCLUSIVE, f"{yes[0][1].reason}, but {worse[0].reason}"), []
    if yes:
        return Answer(YES, "; ".join(a.reason for _, a in yes)), [scope for scope, _ in yes]
    if worse:
        return worse[0], []
    unsure = [a for a in answers if a.answer == INCONCLUSIVE]
    return (unsure[0] if unsure else answers[0]), []


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

    Answered where it moves and over the whole mask (:func:`looks`). With a ``motion``
    below what the data resolve the answer is "no", whatever the FSC says: the deformed map
    is then the consensus reconstructed another way (on a motion-free demo the deformed
    pipeline's own reconstruction scored +0.013 over the consensus's, 9 standard errors). A
    gain in one place with a significant loss in the other is "inconclusive".
    """
    if gain.get("unresolved"):
        return Answer(
            NO, "the " + " and ".join(gain["unresolved"]) + " half maps have no resolution"
        )
    answer, _ = _looked_answer(gain, "over_consensus", floors, "the consensus")
    if motion.unresolvable and answer.answer != NO:
        return Answer(
            NO,
            f"{answer.reason}; with no resolvable motion the deformed map is the consensus "
            "reconstructed another way, and any difference is the reconstruction's, not a "
            "motion's",
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
    answer, shown_in = _looked_answer(gain, "over_null", floors, "the null control")
    if answer.answer != YES:
        return answer
    if motion["median_error_a"] >= motion["median_motion_a"]:
        return Answer(
            INCONCLUSIVE,
            f"{answer.reason}, but the half sets disagree on the motion "
            f"({motion['median_error_a']:.2f} Å) as much as it moves "
            f"({motion['median_motion_a']:.2f} Å)",
        )
    if all(null_as_good(scope) for scope in shown_in):
        return Answer(
            INCONCLUSIVE,
            f"{answer.reason}, but the null control scores as well as the real run over the "
            "consensus",
        )
    return answer


def null_as_good(scope: Mapping[str, Any]) -> bool:
    """Whether the null control gains over the consensus as much as the real run (in ``scope``)."""
    null, real = scope["null_over_consensus"], scope["over_consensus"]
    return bool(null["fsc_area"] >= real["fsc_area"] - real["se"])


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
