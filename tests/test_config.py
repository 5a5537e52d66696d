"""Configuration schema: the shipped config.yaml and validation messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from dynamight_core.config import ConfigError, defaults, describe, validate
from dynamight_core.config_yaml import DEMO, render_yaml

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_is_generated_from_the_schema() -> None:
    assert (REPO / "config.yaml").read_text() == render_yaml(), (
        "config.yaml is out of date: python -m dynamight_core.config > config.yaml"
    )


def test_every_key_is_documented() -> None:
    for key, spec in describe():
        assert len(spec.help) > 10, key


def test_shipped_config_is_the_defaults_plus_the_demo_values() -> None:
    loaded = yaml.safe_load((REPO / "config.yaml").read_text())
    expected = defaults()
    for section, values in DEMO.items():
        expected[section].update(values)
    assert validate(loaded, check_files=False) == expected


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    values = {
        "reconstruct": {"pda": 2, "batch_size": "sixty", "tau2_fudge": -1},
        "simulate": {"motion": "wobble"},
        "resourcs": {},
    }
    with pytest.raises(ConfigError) as error:
        validate(values, base=tmp_path)
    message = str(error.value)
    assert "5 problem(s)" in message
    assert "reconstruct.pda: unknown key (did you mean 'reconstruct.pad'?)" in message
    assert "reconstruct.batch_size: expected an integer, found 'sixty'" in message
    assert "reconstruct.tau2_fudge: expected a value >= 0.01, found -1" in message
    assert "simulate.motion: expected one of hinge, interpolate, none, found 'wobble'" in message
    assert "resourcs: unknown key (did you mean 'resources'?)" in message


def test_missing_input_file_unless_the_workflow_makes_it(tmp_path: Path) -> None:
    assert validate({}, base=tmp_path)  # the demo inputs are made by rule simulate
    with pytest.raises(ConfigError, match=re.escape("inputs.mask: file 'my_mask.mrc' does not")):
        validate({"inputs": {"mask": "my_mask.mrc"}}, base=tmp_path)
    (tmp_path / "my_mask.mrc").write_text("")
    assert validate({"inputs": {"mask": "my_mask.mrc"}}, base=tmp_path)


def test_text_from_the_command_line_is_coerced() -> None:
    merged = validate({"reconstruct": {"pad": "3"}, "inputs": {"mask": "null"}}, check_files=False)
    assert merged["reconstruct"]["pad"] == 3 and merged["inputs"]["mask"] is None
