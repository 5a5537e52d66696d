"""One orientation of a latent direction across the two half sets.

Each half set's latent space is its own: the sign of its first principal component is
arbitrary, so "the 5th percentile of PC1" is one end of the motion in one half and the
other end in the other. The halves share the consensus frame, though: each direction can
be decoded into a displacement field on the pseudo-atoms, and two fields of the same
motion agree in sign. :func:`align_directions` compares the fields on common points (both
halves' pseudo-atoms, each field carried there by
:func:`~dynamight_core.geometry.scattered.kernel_interpolate`) and returns the sign that
makes half 2's direction agree with half 1's.

What crosses between the halves is that one sign, decided from the decoded motion, never
from images: no half's map or latent values change with the other half's data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynamight_core.errors import InputError
from dynamight_core.geometry.scattered import kernel_interpolate

# below this |correlation| the two directions are not the same motion: no alignment
MIN_AGREEMENT = 0.3
# the ``kind`` of align-halves' JSON record
ALIGNMENT_KIND = "dynamight-latent-alignment"


def read_alignment(path: str | Path) -> dict[str, Any]:
    """align-halves' JSON record at ``path``.

    Raises
    ------
    InputError
        When the file cannot be read or is not such a record (its ``kind``).
    """
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, "file", "align-halves' JSON record", str(err)) from None
    if not isinstance(record, dict) or record.get("kind") != ALIGNMENT_KIND:
        found = record.get("kind") if isinstance(record, dict) else type(record).__name__
        raise InputError(path, "kind", f"align-halves' record ({ALIGNMENT_KIND})", repr(found))
    return record


@dataclass(frozen=True)
class DirectionAlignment:
    """How half 2's latent direction relates to half 1's.

    Attributes
    ----------
    component
        The principal component compared (0 for PC1).
    sign
        +1 or -1: multiply half 2's scores on that component by it to match half 1's.
    correlation
        Cosine between the two halves' displacement fields on common points, after the
        sign (in [0, 1]; near 1: the same motion).
    aligned
        Whether ``correlation`` reaches :data:`MIN_AGREEMENT`.
    """

    component: int
    sign: int
    correlation: float
    aligned: bool

    def record(self) -> dict[str, object]:
        """JSON-ready fields."""
        return asdict(self)


def field_correlation(
    points: tuple[np.ndarray, np.ndarray],
    fields: tuple[np.ndarray, np.ndarray],
    width_a: float,
) -> float:
    """Cosine between two displacement fields known on two point sets (signed).

    Parameters
    ----------
    points
        `(N1, 3)` and `(N2, 3)`: where each half's field is known (Å).
    fields
        `(N1, 3)` and `(N2, 3)`: the displacements there (Å).
    width_a
        Kernel width carrying each field to the other's points (Å).
    """
    common = torch.from_numpy(np.concatenate(points).astype(np.float64))
    carried = [
        kernel_interpolate(common, torch.from_numpy(where), torch.from_numpy(values), width_a)
        for where, values in zip(points, fields, strict=True)
    ]
    one, two = (values.numpy().ravel() for values in carried)
    norm = float(np.linalg.norm(one) * np.linalg.norm(two))
    return float(one @ two / norm) if norm > 0 else 0.0


def align_directions(
    points: tuple[np.ndarray, np.ndarray],
    fields: tuple[np.ndarray, np.ndarray],
    width_a: float,
    component: int = 0,
) -> DirectionAlignment:
    """The sign that orients half 2's direction as half 1's, and how well they agree."""
    correlation = field_correlation(points, fields, width_a)
    sign = 1 if correlation >= 0 else -1
    agreement = abs(correlation)
    return DirectionAlignment(component, sign, round(agreement, 4), agreement >= MIN_AGREEMENT)


@dataclass(frozen=True)
class HalfOrientation:
    """How one half set's PC1 is shown: its sign and the alignment it comes from.

    Attributes
    ----------
    half
        The half set (1 or 2).
    sign
        +1 or -1: multiplies the half set's PC1 (+1 for half set 1, and for half set 2 when
        the halves do not agree enough to be aligned).
    agreement
        The two halves' agreement on the motion along PC1 (align-halves' correlation).
    aligned
        Whether the agreement is enough to call the two PC1 one motion.
    """

    half: int
    sign: int
    agreement: float
    aligned: bool

    def record(self) -> dict[str, object]:
        """JSON-ready fields, with what they mean."""
        return {
            **asdict(self),
            "definition": "PC1 multiplied by sign so that both half sets' PC1 run the same way "
            "(align-halves' sign for half set 2); agreement: cosine of the two halves' "
            "decoded PC1 displacement fields",
        }


def alignment_for_model(
    path: str | Path, half: int, model_sha256: str, model: str | Path = "this model"
) -> dict[str, Any]:
    """align-halves' record at ``path``, checked to be made with ``half``'s model.

    Raises
    ------
    InputError
        When the record is not align-halves' or was made with another model of this half
        (``model_sha256``, the SHA-256 of the half set's model file ``model``).
    """
    record = read_alignment(path)
    models = record.get("models_sha256")
    if not isinstance(models, list) or len(models) != 2 or models[half - 1] != model_sha256:
        raise InputError(
            path,
            "models_sha256",
            f"the alignment made with {model} (half set {half})",
            "an alignment made with another model",
            "Give the alignment.json of the same run",
        )
    return record


def half_orientation(path: str | Path, half: int, model_sha256: str) -> HalfOrientation:
    """The orientation of ``half``'s PC1 from align-halves' record at ``path``.

    Half set 2 takes the record's sign only when the halves agree (``aligned``). Raises
    :class:`InputError` as :func:`alignment_for_model` does.
    """
    record = alignment_for_model(path, half, model_sha256)
    aligned = bool(record["aligned"])
    sign = int(record["sign"]) if half == 2 and aligned else 1
    return HalfOrientation(half, sign, float(record["correlation"]), aligned)
