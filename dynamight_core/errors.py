"""Errors for bad user input, raised before any compute starts."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """A user-supplied file or value is unusable.

    The message always names the file, the field, what was expected and what was found,
    so that a user can fix the input without reading a traceback.

    Parameters
    ----------
    source
        The file (or configuration key) that holds the bad value.
    field
        The column, header field or key inside ``source``.
    expected
        What the program needs.
    found
        What it found instead.
    hint
        Optional advice on how to fix it.
    """

    def __init__(
        self,
        source: str | PathLike[str],
        field: str,
        expected: str,
        found: str,
        hint: str | None = None,
    ) -> None:
        self.source = str(source)
        self.field = field
        self.expected = expected
        self.found = found
        self.hint = hint
        message = f"{self.source}: {field}: expected {expected}, found {found}"
        if hint:
            message += f". {hint}"
        super().__init__(message)
