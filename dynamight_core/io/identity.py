"""What made an artefact, and the checks that a stage's inputs belong together.

Every artefact a consumer must pair with another carries an identity:

- a trained half-set VAE records its ``half`` and a ``run`` id, the fingerprint of its
  training (settings plus the SHA-256 of every input file), so a rerun with the same
  settings on the same files gets the same id and a resumed run keeps it;
- its latent table carries the same two in columns ``half`` and ``model_run``;
- a half map records, in an MRC header label, its kind (``consensus``, ``deformed``,
  ``null``, ``state_05`` ...), its half and the half split it was made from (the
  fingerprint of ``halves.csv``), so two half maps of one pair must be of the same kind and
  split, of the two halves, and not the same data.

A consumer that finds a mismatch raises :class:`~dynamight_core.errors.InputError` naming
both files. Files written before identities existed (no label, no column) are accepted with
a warning: nothing in them can be checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynamight_core.errors import InputError
from dynamight_core.io.files import sha256_file

logger = logging.getLogger(__name__)

RUN_ID_HEX = 16
MAP_LABEL_PREFIX = "dynamight-map"


def input_hashes(
    inputs: Mapping[str, str | os.PathLike[str] | None],
) -> dict[str, str | None]:
    """Role -> SHA-256 of the file (``None`` for an input not given)."""
    return {name: sha256_file(path) if path else None for name, path in inputs.items()}


def fingerprint(settings: Mapping[str, Any], hashes: Mapping[str, str | None]) -> str:
    """A run id: 16 hex digits of SHA-256 over ``settings`` and the inputs' ``hashes``.

    ``hashes``: :func:`input_hashes` of the run's input files. Deterministic: the same
    settings on the same files give the same id.
    """
    record = {"settings": dict(settings), "inputs": dict(hashes)}
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:RUN_ID_HEX]


def split_id(halves_path: str | os.PathLike[str]) -> str:
    """The fingerprint of a half split (``halves.csv``): 16 hex digits of its SHA-256."""
    return sha256_file(halves_path)[:RUN_ID_HEX]


@dataclass(frozen=True)
class MapOrigin:
    """What a half map was made from, kept in its MRC header.

    Attributes
    ----------
    kind
        ``consensus``, ``deformed``, ``null``, ``state_NN``, ...
    half
        The half set (1 or 2), or 0 for a map of both halves.
    split
        :func:`split_id` of the half split the map's particles came from.
    run
        The training run of the half-set VAE the map was reconstructed with (``""`` for a
        map made without one, e.g. the consensus).
    """

    kind: str
    half: int
    split: str
    run: str = ""

    def label(self) -> str:
        """The MRC header label (at most 80 characters)."""
        text = f"{MAP_LABEL_PREFIX} kind={self.kind} half={self.half} split={self.split}"
        if self.run:
            text += f" run={self.run}"
        if len(text) > 80:
            raise ValueError(f"map label longer than 80 characters: {text}")
        return text

    @classmethod
    def parse(cls, label: str) -> MapOrigin | None:
        """The origin in an MRC header label, or ``None`` if the label is not one."""
        words = label.split()
        if not words or words[0] != MAP_LABEL_PREFIX:
            return None
        fields = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        try:
            return cls(fields["kind"], int(fields["half"]), fields["split"], fields.get("run", ""))
        except (KeyError, ValueError):
            return None


def describe(path: str | os.PathLike[str], origin: MapOrigin | None) -> str:
    """``path (kind, half h)`` for messages."""
    if origin is None:
        return f"{path} (no origin recorded)"
    return f"{path} ({origin.kind} map, half {origin.half})"


def check_half_map_pair(
    paths: tuple[str | os.PathLike[str], str | os.PathLike[str]],
    origins: tuple[MapOrigin | None, MapOrigin | None],
    identical: bool,
) -> None:
    """Fail unless two maps can be an independent half-map pair.

    ``identical``: whether the two maps hold the same voxel values. Refused: one file twice,
    identical data, two maps of the same half, maps of different kinds or of different
    half splits.

    Raises
    ------
    InputError
        Naming both files.
    """
    first, second = (Path(path) for path in paths)
    both = f"{first} and {second}"
    if first.exists() and second.exists() and first.samefile(second):
        raise InputError(both, "file", "two different half maps", "the same file twice")
    if identical:
        raise InputError(
            both,
            "data",
            "two independent half maps",
            "identical voxel values",
            "An FSC of a map with itself is 1 at every shell: give the other half's map",
        )
    one, two = origins
    if one is None or two is None:
        missing = [str(path) for path, origin in zip(paths, origins, strict=True) if not origin]
        logger.warning(
            "%s: no origin label (written by another program or an older version): cannot "
            "check that the two half maps are a pair",
            ", ".join(missing),
        )
        return
    if one.half == two.half:
        raise InputError(both, "half", "maps of half 1 and half 2", f"two maps of half {one.half}")
    for field in ("kind", "split"):
        if getattr(one, field) != getattr(two, field):
            raise InputError(
                both,
                field,
                "two halves of one reconstruction",
                f"{describe(first, one)} with {field} {getattr(one, field)}, "
                f"{describe(second, two)} with {field} {getattr(two, field)}",
            )


def check_latents_from_model(
    latents_path: str | os.PathLike[str],
    latent_run: str | None,
    latent_half: int | None,
    model_path: str | os.PathLike[str],
    model_run: str,
    model_half: int,
) -> None:
    """Fail unless a latent table was written by the training run that made the model.

    ``latent_run``/``latent_half``: the table's ``model_run``/``half`` columns (``None``
    when absent: a table written before identities, or by the user, is accepted with a
    warning). ``model_run`` is ``""`` for a model written before identities.

    Raises
    ------
    InputError
        Naming both files.
    """
    if latent_half is not None and latent_half != model_half:
        raise InputError(
            latents_path,
            "half",
            f"the latents of half set {model_half} (as {model_path})",
            f"half set {latent_half}",
        )
    if latent_run is None or not model_run:
        logger.warning(
            "%s and %s: no training run recorded in %s: cannot check that the latents are "
            "this model's",
            latents_path,
            model_path,
            "the latent table" if latent_run is None else "the model",
        )
        return
    if latent_run != model_run:
        raise InputError(
            latents_path,
            "model_run",
            f"the latents of training run {model_run} ({model_path})",
            f"training run {latent_run}",
            "Give the latent table train-vae wrote together with this model",
        )


# the labels of the workflow's post-processed pairs, which are also their maps' kinds
PAIR_KINDS = ("consensus", "deformed", "null")


def check_label_matches_origin(label: str, volume: Any) -> None:
    """Fail when a pair labelled as one of :data:`PAIR_KINDS` holds maps of another kind.

    ``volume``: a :class:`~dynamight_core.io.mrc.Volume` (its ``origin`` and ``path``).
    """
    origin = volume.origin
    if origin is None or label not in PAIR_KINDS or origin.kind == label:
        return
    raise InputError(
        volume.path,
        "kind",
        f"a {label} half map (--label {label})",
        f"a {origin.kind} map",
        "Were the half maps of two reconstructions swapped?",
    )


def origin_record(volume: Any) -> dict[str, Any] | None:
    """A half map's origin as JSON (kind and split), ``None`` when not recorded."""
    origin = volume.origin
    if origin is None:
        return None
    return {"kind": origin.kind, "split": origin.split, "run": origin.run or None}


def check_postprocessed_pairs(
    paths: Mapping[str, str | os.PathLike[str]], records: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """Fail unless each post-processing record is of its pair and all are of one run.

    ``paths``/``records``: label (``consensus``, ``deformed``, ``null``) -> postprocess's
    JSON file and its content. Returns the half split the pairs share (``None`` when no
    record names one).

    Raises
    ------
    InputError
        When a record was made for another label (e.g. the consensus's numbers given as
        the deformed maps'), or the pairs come from different half splits.
    """
    splits: dict[str, str] = {}
    for label, record in records.items():
        found = record.get("label")
        origin = record.get("half_maps") or {}
        kind = origin.get("kind", found)
        if found is not None and (found != label or kind != label):
            raise InputError(
                paths[label],
                "label",
                f"post-processing of the {label} half maps",
                f"the {kind} maps' (label {found})",
                "Were the report's inputs given in another order?",
            )
        if origin.get("split"):
            splits[label] = origin["split"]
    if len(set(splits.values())) > 1:
        raise InputError(
            ", ".join(str(paths[label]) for label in splits),
            "half_maps.split",
            "half maps of one run (one half split)",
            ", ".join(f"{label}: {split}" for label, split in splits.items()),
        )
    return next(iter(splits.values()), None)


def check_negative_control(
    path: str | os.PathLike[str], record: Mapping[str, Any], split: str | None
) -> None:
    """Fail when a negative control's summary is this run's own (the same half split).

    A negative control is a run on other data (without motion); a summary whose maps
    share this run's half split is this run, and comparing a run with itself shows nothing.
    """
    theirs = (record.get("origin") or {}).get("split")
    if split and theirs == split:
        raise InputError(
            path,
            "origin.split",
            "the summary of a run on other data (without motion)",
            f"this run's own half split ({split})",
        )
