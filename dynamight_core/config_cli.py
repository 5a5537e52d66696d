"""Stage options generated from the configuration schema, and the flags that set them.

The schema (:mod:`dynamight_core.config_schema`) is the one source of every setting's name,
type, default, range and help. :func:`add_section_arguments` turns a schema section into
command-line options; :func:`section_flags` writes a resolved configuration section as
the flags that reproduce it (the workflow's rules use it); :func:`settings_from_args`
builds a stage's settings dataclass from the parsed options. A value is parsed and checked
by the same code whether it comes from ``config.yaml`` or from the command line (the
command line skips only the range check), and
``null`` is spelled the same in both: a null in the configuration reaches the stage as
``--flag null``, an omitted flag takes the schema's default, as an omitted key does.
Standard library only: ``--help`` imports no torch.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Collection, Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from dynamight_core.config import check_value, coerce_value, format_value
from dynamight_core.config_schema import SCHEMA, Key

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# attribute set on every option's argparse action: "schema" (with SCHEMA_KEY), "file" or "run"
OPTION_KIND = "option_kind"
SCHEMA_KEY = "schema_key"

Settings = TypeVar("Settings", bound="DataclassInstance")


def _value_parser(dotted: str, spec: Key) -> Callable[[str], Any]:
    """Parses and checks one option's text as the configuration's value, except its range.

    The ranges are the configuration's guard rails; a stage run by hand takes any value
    of the right type (an absurd learning rate, say, to see training diverge).
    """
    unbounded = replace(spec, minimum=None, maximum=None)

    def parse(text: str) -> Any:
        value = coerce_value(spec, text)
        problem = check_value(dotted, unbounded, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = spec.kind
    return parse


def flag_name(name: str) -> str:
    """``--max-resolution-a`` for the key ``max_resolution_a``."""
    return "--" + name.replace("_", "-")


def _keys(section: str, only: Collection[str] | None, skip: Collection[str]) -> dict[str, Key]:
    specs = SCHEMA[section]
    names = list(specs) if only is None else list(only)
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise KeyError(f"no setting {section}.{unknown[0]} in the schema")
    return {name: specs[name] for name in names if name not in skip}


def add_section_arguments(
    parser: argparse.ArgumentParser,
    section: str,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
) -> None:
    """One option per setting of ``SCHEMA[section]`` (``only`` those, or all but ``skip``).

    Each option has the setting's type, default, choices and help; nullable settings also
    accept ``null``.
    """
    for name, spec in _keys(section, only, skip).items():
        dotted = f"{section}.{name}"
        text = spec.help + (f"; '{format_value(None)}' allowed" if spec.nullable else "")
        action = parser.add_argument(
            flag_name(name),
            type=_value_parser(dotted, spec),
            default=spec.default,
            help=f"{text} [config: {dotted}]".replace("%", "%%"),
            metavar=spec.kind.upper(),
        )
        setattr(action, OPTION_KIND, "schema")
        setattr(action, SCHEMA_KEY, dotted)


def add_file_argument(
    parser: argparse.ArgumentParser, flag: str, help_text: str, **options: Any
) -> None:
    """An option naming an input or output file (set by the workflow, not the config)."""
    options.setdefault("required", "default" not in options)
    action = parser.add_argument(flag, help=help_text.replace("%", "%%"), **options)
    setattr(action, OPTION_KIND, "file")


def add_run_argument(
    parser: argparse.ArgumentParser, flag: str, help_text: str, **options: Any
) -> None:
    """An option of how a run goes (device, threads, checkpoints), not what it computes."""
    action = parser.add_argument(flag, help=help_text.replace("%", "%%"), **options)
    setattr(action, OPTION_KIND, "run")


def section_flags(
    values: Mapping[str, Any],
    section: str,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
) -> str:
    """Shell-quoted flags that set every setting of a resolved ``section`` (nulls too)."""
    return " ".join(
        f"{flag_name(name)} {shlex.quote(format_value(values[name]))}"
        for name in _keys(section, only, skip)
    )


def settings_from_args(cls: type[Settings], args: argparse.Namespace) -> Settings:
    """The dataclass ``cls`` with each field taken from the parsed option of that name."""
    return cls(**{item.name: getattr(args, item.name) for item in fields(cls)})
