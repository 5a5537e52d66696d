"""Configuration, paths and helpers shared by every rule file."""

import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# the configuration schema is standard-library only: importing it needs no torch
sys.path.insert(0, workflow.basedir)
from dynamight_core.config import ConfigError, validate  # noqa: E402

try:
    CFG = validate(config, source="config.yaml (merged with --config/--configfile)")
except ConfigError as error:
    raise WorkflowError(str(error)) from None

VERSION = re.search(
    r'__version__ = "([^"]+)"',
    Path(workflow.basedir, "dynamight_core", "_version.py").read_text(),
).group(1)
CODE_DIR = workflow.basedir
OUT = CFG["output_dir"].rstrip("/")
SIM = CFG["simulate"]["out_dir"].rstrip("/")
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"
RECORDS = f"{OUT}/records"
CHECKPOINTS = f"{OUT}/.checkpoints"
INPUTS = CFG["inputs"]
STAR = INPUTS["particles"]


def flags(section, skip=()):
    """Command-line flags for every key of a config section (config -> params -> CLI)."""
    return " ".join(
        f"--{key.replace('_', '-')} {shlex.quote(str(value))}"
        for key, value in section.items()
        if key not in skip and value is not None
    )


def optional_flag(name, value):
    """``--name value`` when the value is set, else nothing."""
    return "" if value is None else f"--{name} {shlex.quote(str(value))}"


def optional_inputs(*values):
    """The inputs among ``values`` that are set."""
    return [value for value in values if value is not None]


def threads_for(stage):
    return CFG["resources"][stage]["cpus"]


def gpus_for(stage):
    return CFG["resources"][stage]["gpu"]


def mem_for(stage):
    base = CFG["resources"][stage]["mem_mb"]
    return lambda wildcards, attempt: base * attempt


def runtime_for(stage):
    base = CFG["resources"][stage]["runtime_min"]
    return lambda wildcards, attempt: base * attempt


def config_json():
    """The resolved configuration, quoted for the shell."""
    return shlex.quote(json.dumps(CFG, sort_keys=True))


HALVES = (1, 2)


wildcard_constraints:
    half="1|2",


def final_outputs():
    return [
        f"{OUT}/consensus/fsc.json",
        f"{OUT}/consensus/fsc.png",
        *expand(f"{OUT}/vae/half{{half}}/latents.csv", half=HALVES),
        f"{OUT}/vae/deformation_error.json",
        f"{OUT}/provenance.json",
    ]


def stage_records():
    """Run records of every stage that makes the final outputs."""
    per_half = ("fit_consensus", "warmup", "train_vae")
    return [
        f"{RECORDS}/split_halves.json",
        f"{RECORDS}/reconstruct_consensus.json",
        f"{RECORDS}/fsc_consensus.json",
        f"{RECORDS}/deformation_error.json",
        *[
            f"{RECORDS}/{stage}_half{half}.json"
            for stage in per_half
            for half in HALVES
        ],
    ]
