"""Settings of a workflow run started by RELION's External job, merged in layers.

Layers of YAML settings merged section by section, relative paths taken from the RELION
project.

Pure dictionaries; validation is :func:`dynamight_core.config.validate`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dynamight_core.config import describe


def absolute_from(path: str | os.PathLike[str], project: Path) -> Path:
    """``path`` as an absolute path, relative ones taken from the project folder."""
    return Path(os.path.normpath(project / Path(path).expanduser()))


def merge_settings(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, section by section (copies, nothing changed)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_settings(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def nested_setting(dotted: str, value: Any) -> dict[str, Any]:
    """``{"vae": {"max_epochs": value}}`` for ``"vae.max_epochs"``."""
    *sections, name = dotted.split(".")
    nested: dict[str, Any] = {name: value}
    for section in reversed(sections):
        nested = {section: nested}
    return nested


def setting_at(values: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in nested ``values`` (``None`` when absent)."""
    current: Any = values
    for part in dotted.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def with_absolute_paths(values: Mapping[str, Any], project: Path) -> dict[str, Any]:
    """Settings of kind ``path`` given as relative paths made relative to the project."""
    result = merge_settings({}, values)
    for dotted, spec in describe():
        value = setting_at(result, dotted)
        if (
            spec.kind == "path"
            and isinstance(value, str)
            and value.strip() not in ("", "null", "None", "~")
            and not Path(value).expanduser().is_absolute()
        ):
            result = merge_settings(
                result, nested_setting(dotted, str(absolute_from(value, project)))
            )
    return result


def yaml_module() -> Any:
    """PyYAML (a dependency; imported when needed, it has no type information here)."""
    import yaml  # type: ignore[import-untyped]

    return yaml


def load_yaml_settings(path: Path, what: str) -> dict[str, Any]:
    """The settings in the YAML file ``path`` (``what`` names it in errors)."""
    from dynamight_core.errors import InputError

    yaml = yaml_module()
    if not path.is_file():
        raise InputError(path, what, "a YAML file of settings", "no such file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise InputError(path, what, "YAML", str(error).replace("\n", " ")) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InputError(path, what, "a mapping of settings", type(loaded).__name__)
    return loaded


def relion_defaults(project: Path) -> dict[str, Any]:
    """What a RELION run changes of the shipped config.yaml, which runs the demo.

    The demo's values (a short training, the phantom's residue count) go back to the
    schema's defaults, and the inputs that point at the demo's simulated truth to none.
    """
    from dynamight_core.config_schema import SCHEMA
    from dynamight_core.config_yaml import DEMO

    values: dict[str, Any] = {
        section: {name: SCHEMA[section][name].default for name in names}
        for section, names in DEMO.items()
    }
    values["inputs"] = {
        "project_root": str(project),
        "reference_map": None,
        "reference_state": None,
        "mask": None,
    }
    return values
