"""Workflow configuration: validation of ``config.yaml`` against the schema.

Standard library only, so the Snakefile can import it without torch. Validation collects
every problem (unknown keys with a did-you-mean, wrong types, values out of range, missing
input files) and raises one :class:`ConfigError` listing them all, before any job runs.
The schema itself (every setting's default, range and help) is
:mod:`dynamight_core.config_schema`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynamight_core.config_schema import SCHEMA, Key


class ConfigError(ValueError):
    """The configuration has problems; the message lists all of them."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration:\n{lines}")


def defaults(schema: Mapping[str, Any] = SCHEMA) -> dict[str, Any]:
    """Nested dictionary of default values."""
    return {
        name: (spec.default if isinstance(spec, Key) else defaults(spec))
        for name, spec in schema.items()
    }


def format_value(value: Any) -> str:
    """A setting's value as ``config.yaml`` and the stages' flags spell it (``null``, ``true``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def coerce_value(spec: Key, value: Any) -> Any:
    """Numbers, booleans and null given as text (``--config`` passes nested values as text)."""
    if spec.nullable and isinstance(value, str) and value.strip() in ("null", "None", "~"):
        return None
    if not isinstance(value, str) or spec.kind not in ("int", "float", "bool"):
        return value
    text = value.strip()
    if spec.kind == "bool":
        return {"true": True, "false": False}.get(text.lower(), value)
    try:
        return int(text) if spec.kind == "int" else float(text)
    except ValueError:
        return value


def _bound(number: float) -> str:
    """A bound as written in the schema: integers in full (4000000, not 4e+06)."""
    if isinstance(number, int) or float(number).is_integer():
        return str(int(number))
    return f"{number:g}"


def check_value(key: str, spec: Key, value: Any) -> str | None:
    """A problem description, or ``None`` when ``value`` fits ``spec``."""
    if value is None:
        return None if spec.nullable else f"{key}: expected a value, found null"
    expected = {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
        "path": "a path (string)",
    }[spec.kind]
    if spec.kind == "int":
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif spec.kind == "float":
        fits = isinstance(value, int | float) and not isinstance(value, bool)
    elif spec.kind == "bool":
        fits = isinstance(value, bool)
    else:
        fits = isinstance(value, str) and value != ""
    if not fits:
        return f"{key}: expected {expected}, found {value!r} ({type(value).__name__})"
    if spec.kind == "float" and not math.isfinite(value):
        return f"{key}: expected a finite number, found {value!r}"
    if spec.choices is not None and value not in spec.choices:
        return f"{key}: expected one of {', '.join(spec.choices)}, found {value!r}"
    if spec.minimum is not None and spec.above_minimum and value <= spec.minimum:
        return f"{key}: expected a value > {_bound(spec.minimum)}, found {value!r}"
    if spec.minimum is not None and value < spec.minimum:
        return f"{key}: expected a value >= {_bound(spec.minimum)}, found {value!r}"
    if spec.maximum is not None and value > spec.maximum:
        return f"{key}: expected a value <= {_bound(spec.maximum)}, found {value!r}"
    return None


def _merge(
    schema: Mapping[str, Any], values: Mapping[str, Any], prefix: str, problems: list[str]
) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in values:
        if name not in schema:
            close = difflib.get_close_matches(str(name), list(schema), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            problems.append(f"{prefix}{name}: unknown key{hint}")
    for name, spec in schema.items():
        key = f"{prefix}{name}"
        if isinstance(spec, Key):
            value = coerce_value(spec, values.get(name, spec.default))
            problem = check_value(key, spec, value)
            if problem:
                problems.append(problem)
            merged[name] = value
        else:
            sub = values.get(name, {})
            if not isinstance(sub, Mapping):
                problems.append(f"{key}: expected a section (mapping), found {sub!r}")
                sub = {}
            merged[name] = _merge(spec, sub, f"{key}.", problems)
    return merged


def _missing_files(
    schema: Mapping[str, Any],
    values: Mapping[str, Any],
    prefix: str,
    produced: set[str],
    base: Path,
    problems: list[str],
) -> None:
    for name, spec in schema.items():
        key = f"{prefix}{name}"
        value = values.get(name)
        if isinstance(spec, Key):
            if spec.must_exist and isinstance(value, str) and value not in produced:
                path = Path(value) if Path(value).is_absolute() else base / value
                if not path.exists():
                    problems.append(
                        f"{key}: file '{value}' does not exist (and no rule of "
                        "the workflow makes it)"
                    )
        elif isinstance(value, Mapping):
            _missing_files(spec, value, f"{key}.", produced, base, problems)


def produced_by_workflow(config: Mapping[str, Any]) -> set[str]:
    """Input paths that rule ``simulate`` creates (the demo data)."""
    out_dir = str(config["simulate"]["out_dir"]).rstrip("/")
    return {
        f"{out_dir}/particles.star",
        f"{out_dir}/mask.mrc",
        f"{out_dir}/truth/average.mrc",
        f"{out_dir}/truth/mid_state.mrc",
    }


def validate(
    values: Mapping[str, Any] | None,
    source: str = "config.yaml",
    base: Path | None = None,
    check_files: bool = True,
) -> dict[str, Any]:
    """Merge ``values`` over the defaults and check everything.

    Parameters
    ----------
    values
        The configuration as loaded from YAML (may be partial).
    source
        Name of the configuration for the message.
    base
        Folder that relative paths are relative to (the working directory by default).
    check_files
        Also check that input files exist (unless the workflow makes them).

    Returns
    -------
    dict
        The complete configuration.

    Raises
    ------
    ConfigError
        Listing every problem found.
    """
    problems: list[str] = []
    merged = _merge(SCHEMA, values or {}, "", problems)
    if not problems and check_files:
        _missing_files(
            SCHEMA, merged, "", produced_by_workflow(merged), base or Path.cwd(), problems
        )
    if problems:
        raise ConfigError(source, problems)
    return merged


def describe(schema: Mapping[str, Any] = SCHEMA, prefix: str = "") -> list[tuple[str, Key]]:
    """Flat list of ``(dotted key, Key)`` for documentation and tests."""
    rows: list[tuple[str, Key]] = []
    for name, spec in schema.items():
        if isinstance(spec, Key):
            rows.append((f"{prefix}{name}", spec))
        else:
            rows.extend(describe(spec, f"{prefix}{name}."))
    return rows


if __name__ == "__main__":
    import sys

    from dynamight_core.config_yaml import render_yaml

    sys.stdout.write(render_yaml())
