"""Every stage option comes from the configuration schema, or names a file or a run control.

The schema (dynamight_core.config) is the single source of each setting's name, type,
default and help: the stages' options, the settings dataclasses and the flags the workflow
writes must all agree with it, and ``--help`` must stay instant (no torch).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import MISSING, fields

import pytest

from dynamight_core.cli import build_parser, commands
from dynamight_core.config import defaults, validate
from dynamight_core.config_cli import OPTION_KIND, SCHEMA_KEY, section_flags
from dynamight_core.config_schema import SCHEMA, Key
from dynamight_core.models.deformation import VaeArchitecture
from dynamight_core.models.seeding import SeedSettings
from dynamight_core.simulate.dataset import SimulationConfig
from dynamight_core.training.fit_map import FitSettings
from dynamight_core.training.inverse import InverseSettings
from dynamight_core.training.vae import VaeSettings
from dynamight_core.training.warmup import WarmupSettings

# the sections whose settings reach stages, and the keys only the workflow reads
STAGE_SECTIONS = (
    "simulate",
    "split",
    "reconstruct",
    "gaussians",
    "warmup",
    "vae",
    "inverse",
    "deformed",
    "postprocess",
    "local_resolution",
    "report",
    "explore",
    "store",
)
# read by the workflow only (report.null_seed reaches the null control's jobs as the run
# option --shuffle-latents-seed, report.negative_control the report as a file)
WORKFLOW_ONLY = {
    "simulate.out_dir",
    "gaussians.use_input_mask",
    "report.null_control",
    "report.null_seed",
    "report.negative_control",
    "store.enabled",
}
SETTINGS_CLASSES = {
    SimulationConfig: "simulate",
    SeedSettings: "gaussians",
    FitSettings: "gaussians",
    WarmupSettings: "warmup",
    VaeSettings: "vae",
    VaeArchitecture: "vae",
    InverseSettings: "inverse",
}
# the section, a stage that takes it, and the keys it takes (None: all but the workflow's)
SECTION_STAGES = [
    ("simulate", "simulate", None),
    ("split", "split-halves", None),
    ("reconstruct", "reconstruct", None),
    ("gaussians", "fit-consensus", None),
    ("warmup", "warmup", None),
    ("vae", "train-vae", None),
    ("inverse", "fit-inverse", None),
    (
        "deformed",
        "backproject-deformed",
        ("method", "control_grid", "shards", "batch_size", "checkpoint_every"),
    ),
    (
        "deformed",
        "solve-deformed",
        ("method", "control_grid", "batch_size", "iterations", "tau2_fudge"),
    ),
    (
        "postprocess",
        "make-mask",
        ("mask_threshold", "mask_lowpass_a", "mask_extend_a", "mask_soft_edge_a"),
    ),
    ("postprocess", "postprocess", ("randomise_at_fsc", "guinier_from_a", "bfactor_a2")),
    ("local_resolution", "local-resolution", None),
    ("store", "store-particles", ("precision",)),
    ("store", "train-vae", ("local_copy",)),
    ("vae", "store-particles", ("max_resolution_a", "encoder_px")),
    ("report", "deformation-error", ("regions",)),
    ("report", "report", ("significance_z",)),
    (
        "explore",
        "explore maps",
        ("states", "low_percentile", "high_percentile", "bfactor", "reconstruct_nearest"),
    ),
    (
        "explore",
        "explore movie",
        ("movie_frames", "movie_fps", "low_percentile", "high_percentile"),
    ),
    ("deformed", "explore maps", ("method", "control_grid", "batch_size", "tau2_fudge")),
]
COMMANDS = [" ".join(command) for command in commands()]


def _stage_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every runnable command's parser, nested actions as ``"explore maps"``."""
    found: dict[str, argparse.ArgumentParser] = {}

    def visit(prefix: str, parser: argparse.ArgumentParser) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[prefix.strip()] = parser
            return
        for name, sub in subs[0].choices.items():
            visit(f"{prefix} {name}", sub)

    visit("", build_parser())
    return found


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _schema_key(dotted: str) -> Key:
    section, name = dotted.split(".")
    return SCHEMA[section][name]


def test_every_stage_has_a_parser() -> None:
    assert set(_stage_parsers()) == set(COMMANDS)


@pytest.mark.parametrize("stage", sorted(COMMANDS))
def test_every_option_has_a_source_and_help(stage: str) -> None:
    for action in _options(_stage_parsers()[stage]):
        kind = getattr(action, OPTION_KIND, None)
        assert kind in ("schema", "file", "run"), f"{stage} {action.option_strings}: no source"
        assert action.help and action.help.strip(), f"{stage} {action.option_strings}: no help"
        if kind == "schema":
            spec = _schema_key(getattr(action, SCHEMA_KEY))
            assert action.default == spec.default, f"{stage} {action.option_strings}"
            assert action.dest == getattr(action, SCHEMA_KEY).split(".")[1]


def test_every_stage_setting_is_an_option() -> None:
    exposed = {
        getattr(action, SCHEMA_KEY)
        for parser in _stage_parsers().values()
        for action in _options(parser)
        if getattr(action, OPTION_KIND, None) == "schema"
    }
    wanted = {
        f"{section}.{name}" for section in STAGE_SECTIONS for name in SCHEMA[section]
    } - WORKFLOW_ONLY
    assert wanted <= exposed, sorted(wanted - exposed)


@pytest.mark.parametrize("cls", list(SETTINGS_CLASSES), ids=lambda c: c.__name__)
def test_settings_defaults_are_the_schema_defaults(cls: type) -> None:
    section = SCHEMA[SETTINGS_CLASSES[cls]]
    shared = [item for item in fields(cls) if item.name in section]
    assert shared, f"{cls.__name__} shares no field with its config section"
    for item in shared:
        assert item.default is not MISSING, f"{cls.__name__}.{item.name} has no default"
        assert item.default == section[item.name].default, f"{cls.__name__}.{item.name}"


@pytest.mark.parametrize("name", ["simulate", "gaussians", "warmup", "vae", "inverse"])
def test_settings_classes_cover_their_section(name: str) -> None:
    covered = {
        item.name
        for cls, section in SETTINGS_CLASSES.items()
        if section == name
        for item in fields(cls)
    }
    missing = {key for key in SCHEMA[name] if f"{name}.{key}" not in WORKFLOW_ONLY} - covered
    assert not missing, f"{name}: {sorted(missing)} reach no settings dataclass"


def _changed(spec: Key) -> object:
    """A valid value other than the default (null where allowed)."""
    if spec.nullable and spec.default is not None:
        return None
    if spec.choices:
        return next(c for c in spec.choices if c != spec.default)
    if spec.kind == "bool":
        return not spec.default
    if spec.kind == "int":
        return (spec.default or int(spec.minimum or 1)) + 1
    if spec.kind == "float":
        value = (spec.default or float(spec.minimum or 1.0)) * 1.5
        return value if spec.maximum is None or value <= spec.maximum else value / 3.0
    return spec.default


@pytest.mark.parametrize(
    ("section", "stage", "only"), SECTION_STAGES, ids=[f"{a}-{b}" for a, b, _ in SECTION_STAGES]
)
def test_workflow_flags_reproduce_the_config(
    section: str, stage: str, only: tuple[str, ...] | None
) -> None:
    """What config.yaml says (nulls included) is what the stage receives from the rule."""
    skip = [key.split(".")[1] for key in WORKFLOW_ONLY if key.startswith(f"{section}.")]
    base = defaults()
    changed = {
        name: _changed(spec)
        for name, spec in SCHEMA[section].items()
        if name not in skip and spec.kind != "path" and (only is None or name in only)
    }
    config = validate({section: changed}, check_files=False)
    for values in (base, config):
        flags = shlex.split(section_flags(values[section], section, only, skip))
        required = _required_arguments(stage)
        parsed = _stage_parsers()[stage].parse_args([*required, *flags])
        for name in changed:
            assert getattr(parsed, name) == values[section][name], f"{section}.{name}"


def test_omitted_flags_take_the_schema_defaults() -> None:
    parsed = _stage_parsers()["train-vae"].parse_args(_required_arguments("train-vae"))
    for name, spec in SCHEMA["vae"].items():
        assert getattr(parsed, name) == spec.default
    assert parsed.max_resolution_a == 8.0  # not Nyquist: the schema's default


def _required_arguments(stage: str) -> list[str]:
    arguments: list[str] = []
    for action in _options(_stage_parsers()[stage]):
        if action.required:
            count = action.nargs if isinstance(action.nargs, int) else 1
            value = "1" if action.choices else "x"
            arguments += [action.option_strings[0], *[value] * count]
    return arguments


def test_help_imports_no_torch() -> None:
    script = (
        "import sys, contextlib, io\n"
        "from dynamight_core.cli import main\n"
        "for command in ((), *__import__('dynamight_core.cli').cli.commands()):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        main([*command, '--help'])\n"
        "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
