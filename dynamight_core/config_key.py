"""One configuration setting's description: :class:`Key`. Standard library only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Key:
    """One configuration value.

    Attributes
    ----------
    kind
        ``"int"``, ``"float"``, ``"bool"``, ``"str"`` or ``"path"``.
    default
        Default value.
    help
        One-line description, with the unit.
    minimum, maximum
        Inclusive bounds for numbers.
    above_minimum
        The value must be strictly greater than ``minimum``.
    choices
        Allowed values for strings.
    nullable
        ``None`` (YAML ``null``) is allowed.
    must_exist
        For paths: the file must exist unless a workflow rule produces it.
    """

    kind: str
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    must_exist: bool = False
    above_minimum: bool = False
