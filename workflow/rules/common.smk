"""Configuration, paths and helpers shared by every rule file."""

import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

# the configuration schema is standard-library only: importing it needs no torch
sys.path.insert(0, workflow.basedir)
from dynamight_core.config import (  # noqa: E402
    ConfigError,
    produced_by_workflow,
    validate,
)
from dynamight_core.config_cli import section_flags  # noqa: E402
from dynamight_core.config_site import driver_sees_gpu  # noqa: E402
from dynamight_core.io.star_stacks import existing_stacks  # noqa: E402

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


def particle_stacks():
    """Image stacks of the particles: inputs too, so a changed .mrcs re-runs its readers."""
    if STAR in produced_by_workflow(CFG):
        return [f"{SIM}/particles.mrcs"]
    return existing_stacks(STAR, INPUTS["project_root"])


STACKS = particle_stacks()


class ShellText(str):
    """Shell words whose every value is already quoted (``shlex.quote``).

    A ``params:`` entry may appear in a rule's shell without ``:q`` only when it is one:
    built by flags(), optional_flag() or config_json(), or returned by a function marked
    with shell_text(). Every other placeholder of a path needs ``:q`` (check_shell_quoting).
    """


def shell_text(function):
    """Mark a ``params:`` function that returns ShellText (flags, not a bare path)."""
    function.shell_text = True
    return function


def flags(section, only=None, skip=()):
    """Flags that give a stage every setting of config ``section`` (nulls included)."""
    return ShellText(section_flags(CFG[section], section, only, skip))


def optional_flag(name, value):
    """``--name value`` when the value is set, else nothing."""
    return ShellText("" if value is None else f"--{name} {shlex.quote(str(value))}")


def optional_inputs(*values):
    """The inputs among ``values`` that are set."""
    return [value for value in values if value is not None]


# Under --sdm conda the rules run in envs/dynamight.yaml, which does not install this
# package: `python -m dynamight_core` finds it because the working directory (first on
# sys.path) is the repository root. Snakemake drops PYTHONPATH in conda jobs.
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method and (
    Path.cwd().resolve() != Path(CODE_DIR).resolve()
):
    raise WorkflowError(
        f"with --sdm conda, run snakemake from the repository root ({CODE_DIR}), not "
        f"{Path.cwd()}: the rules' conda environment finds dynamight_core there"
    )


# stages run once per half set: on a local machine without a GPU both halves run side by
# side, each on half the cores (one training process of 1 thread is about as fast as one of
# 2 on a 2-core CPU, so two at once take half the time: README, "Speed")
PER_HALF_STAGES = {
    "fit_consensus",
    "warmup",
    "train_vae",
    "store_particles",
    "backproject_deformed",
    "solve_deformed",
    "fit_inverse",
    "latent_space",
    "explore_maps",
    "explore_movie",
    "state_maps",
}
SIDE_BY_SIDE = workflow.local_exec and not driver_sees_gpu()


def threads_for(stage):
    """``threads:`` of a stage: resources.<stage>.cpus (half the local cores for a half set)."""
    cpus = CFG["resources"][stage]["cpus"]
    if SIDE_BY_SIDE and stage in PER_HALF_STAGES:
        try:
            return min(cpus, max(1, int(workflow.cores) // 2))
        except (WorkflowError, TypeError, ValueError):
            return cpus
    return cpus


# Snakemake retries a failed job whatever its exit status (`retries:` in the slurm profile).
# A stage exits with 2 on bad input and with 3 when its training diverged; no retry with the
# same input and settings fixes either: its job then leaves a mark here,
# and each retry asks for a few minutes and 1 GB without GPU and stops at once (see
# stage_resources and unless_bad_input). The first attempt of a new run removes the mark.
BAD_INPUT = f"{OUT}/.bad_input"
BAD_INPUT_RETRY = {"mem_mb": 1000, "runtime": 5}


def bad_input_mark(stage):
    """``params:`` function: the mark a job of ``stage`` leaves when it stops on bad input."""
    return lambda wildcards: "_".join(
        [f"{BAD_INPUT}/{stage}", *(f"{key}{value}" for key, value in wildcards.items())]
    )


def stage_resources(stage, resumes=False):
    """``resources:`` of a stage's jobs, from config sections resources.<stage> and slurm.

    Memory grows with the attempt; wall time too, unless the stage ``resumes`` from its
    checkpoint, when each attempt asks for the first one's. No request exceeds
    slurm.max_runtime_min. GPU stages ask for ``gpu`` (sbatch --gpus) or ``gres`` (--gres)
    as slurm.gpu_request says, in slurm.gpu_partition when set. A retry after bad input asks
    for ``BAD_INPUT_RETRY`` and no GPU.
    """
    spec, site = CFG["resources"][stage], CFG["slurm"]
    cap = site["max_runtime_min"]
    mark = bad_input_mark(stage)

    def retry_after_bad_input(wildcards, attempt):
        return int(attempt > 1 and Path(mark(wildcards)).exists())

    def mem_mb(wildcards, attempt):
        if retry_after_bad_input(wildcards, attempt):
            return BAD_INPUT_RETRY["mem_mb"]
        return spec["mem_mb"] * attempt

    def runtime(wildcards, attempt):
        if retry_after_bad_input(wildcards, attempt):
            minutes = BAD_INPUT_RETRY["runtime"]
        else:
            minutes = spec["runtime_min"] * (1 if resumes else attempt)
        return minutes if cap is None else min(minutes, cap)

    def gpus(wildcards, attempt):
        return 0 if retry_after_bad_input(wildcards, attempt) else spec["gpu"]

    def gres(wildcards, attempt):
        count = gpus(wildcards, attempt)
        kind = ["gpu", site["gpu_type"]] if site["gpu_type"] else ["gpu"]
        return ":".join([*kind, str(count)]) if count else ""

    def gpu_model(wildcards, attempt):
        return site["gpu_type"] if gpus(wildcards, attempt) else ""

    resources = {
        "mem_mb": mem_mb,
        "runtime": runtime,
        "bad_input_retry": retry_after_bad_input,
    }
    if site["gpu_request"] == "gpus":
        resources["gpu"] = gpus
        if spec["gpu"] and site["gpu_type"]:
            resources["gpu_model"] = gpu_model
    elif spec["gpu"]:
        resources["gres"] = gres
    if spec["gpu"] and site["gpu_partition"]:
        resources["slurm_partition"] = site["gpu_partition"]
    return resources


def unless_bad_input(command):
    """A stage's shell ``command`` (``--log {log:q}``), not run on a retry after bad input.

    The mark keeps the failed attempt's log: Snakemake deletes a job's log before a retry.
    The stage opens its log itself (``--log``, after locking it), so that a second copy
    refused by a running one leaves that copy's log alone: ``command`` must not redirect
    into the rule's log. While a copy runs, ``logs/.<log name>.lock`` is its log (a second
    name of the same file, dynamight_core.logs.hold_log): a copy refused by it leaves
    no mark, since its log is the running copy's.
    """
    if re.search(r">\s*\{log", command):
        raise WorkflowError(
            f"a stage's command passes --log {{log:q}} instead of redirecting into its "
            f"log (a refused second copy would truncate the running copy's): {command}"
        )
    return (
        "if [ {resources.bad_input_retry} = 1 ]; then"
        " cat {params.bad_input:q} > {log:q};"
        " echo 'not run again: the first attempt stopped on bad input or a diverging"
        " training (exit status 2 or 3, see above), which no retry with the same input and"
        " settings fixes; correct it and run snakemake again' >> {log:q};"
        " exit 2; fi; rm -f {params.bad_input:q}; "
        + command
        + " || {{ status=$?; if [ $status = 2 ] || [ $status = 3 ]; then"
        ' [ -f {log:q} ] && ! [ {log:q} -ef "$(dirname {log:q})/.$(basename {log:q}).lock" ]'
        ' && mkdir -p "$(dirname {params.bad_input:q})"'
        " && cp {log:q} {params.bad_input:q}; fi; exit $status; }}"
    )


# {input...}, {output...}, {log...} and {params...} placeholders of a shell command (the
# others, {threads}, {resources.*} and {wildcards.*}, are numbers or fixed words: see
# wildcard_constraints)
PLACEHOLDER = re.compile(
    r"(?<!\{)\{(input|output|log|params)(?:\.(\w+))?(\[[^]]*\])?(:\w+)?\}"
)


def shell_quoting_faults(rule):
    """The placeholders of ``rule``'s shell command that would reach the shell unquoted."""
    faults = []
    for match in PLACEHOLDER.finditer(rule.shellcmd or ""):
        kind, name, _, spec = match.groups()
        if spec == ":q":
            continue
        if kind == "params" and name is not None:
            value = dict(rule.params.items()).get(name)
            if (
                value == ""
                or isinstance(value, ShellText)
                or getattr(value, "shell_text", False)
            ):
                continue
        faults.append(match.group(0))
    return faults


def check_shell_quoting(rules):
    """Refuse a workflow whose shell commands put a path into the shell unquoted.

    A path with a space (or a quote, ``$``...) would split into words: ``rm -f`` or a
    redirect would then act on the user's file named by its first word.
    """
    listed = "; ".join(
        f"{rule.name} ({', '.join(shell_quoting_faults(rule))})"
        for rule in rules
        if shell_quoting_faults(rule)
    )
    if listed:
        raise WorkflowError(
            "paths reach the shell unquoted (write {input.x:q}, {output.x:q}, {log:q}, "
            f"{{params.x:q}}, or build flags with flags()/optional_flag()): {listed}"
        )


def config_json():
    """The resolved configuration, quoted for the shell."""
    return ShellText(shlex.quote(json.dumps(CFG, sort_keys=True)))


HALVES = (1, 2)
SHARDS = list(range(1, CFG["deformed"]["shards"] + 1))
USE_INVERSE = CFG["deformed"]["method"] == "inverse"


def inverse_model(wildcards):
    """The half set's inverse network when deformed.method is inverse, else nothing."""
    return [f"{OUT}/inverse/half{wildcards.half}.pt"] if USE_INVERSE else []


@shell_text
def inverse_flag(wildcards, input):
    """``--inverse-model`` for the stages that bring images back through it."""
    return optional_flag("inverse-model", input.inverse[0] if input.inverse else None)


# the mask of every masked number: the user's, else the one made from the consensus map
MASK = INPUTS["mask"] or f"{OUT}/postprocess/mask.mrc"
# make-mask's record of the mask it made (a warning when it fell back to a sphere)
MASK_JSON = f"{OUT}/postprocess/mask.json"
# the deformed reconstructions: the real run and, when asked, the null control
RUNS = ["deformed", "null"] if CFG["report"]["null_control"] else ["deformed"]
# the half-map pairs that are post-processed with that mask
POSTPROCESSED = ["consensus", *RUNS]


@shell_text
def null_control_flag(wildcards):
    """``--shuffle-latents-seed`` for the null control's jobs, nothing for the real run."""
    seed = CFG["report"]["null_seed"] if wildcards.run == "null" else None
    return optional_flag("shuffle-latents-seed", seed)


def postprocessed(kind):
    """One output of stage postprocess for every post-processed pair, in report order."""
    return expand(f"{OUT}/postprocess/{{label}}/{kind}", label=POSTPROCESSED)


wildcard_constraints:
    half="1|2",
    shard=r"\d+",
    run="deformed|null",
    label="consensus|deformed|null",


def final_outputs():
    return [
        f"{OUT}/consensus/fsc.json",
        f"{OUT}/consensus/fsc.png",
        *expand(f"{OUT}/vae/half{{half}}/latents.csv", half=HALVES),
        f"{OUT}/vae/deformation_error.json",
        f"{OUT}/deformed/fsc.json",
        f"{OUT}/latent/alignment.json",
        *([f"{OUT}/states/fsc.json"] if CFG["explore"]["state_percentiles"] else []),
        f"{OUT}/provenance.json",
        f"{OUT}/report.html",
        f"{OUT}/summary.json",
    ]


def stage_records():
    """Run records of every stage that makes the final outputs."""
    per_half = (
        "fit_consensus",
        "warmup",
        "train_vae",
        "latent_space",
        "explore_maps",
        "explore_movie",
    )
    return [
        f"{RECORDS}/split_halves.json",
        f"{RECORDS}/reconstruct_consensus.json",
        f"{RECORDS}/fsc_consensus.json",
        f"{RECORDS}/deformation_error.json",
        f"{RECORDS}/fsc_deformed.json",
        f"{RECORDS}/align_halves.json",
        *(
            [f"{RECORDS}/fsc_states.json"]
            + [f"{RECORDS}/state_maps_half{half}.json" for half in HALVES]
            if CFG["explore"]["state_percentiles"]
            else []
        ),
        f"{RECORDS}/local_resolution.json",
        *([] if INPUTS["mask"] else [f"{RECORDS}/make_mask.json"]),
        *(
            [f"{RECORDS}/store_particles_half{half}.json" for half in HALVES]
            if CFG["store"]["enabled"]
            else []
        ),
        *[f"{RECORDS}/postprocess_{label}.json" for label in POSTPROCESSED],
        *[
            f"{RECORDS}/{stage}_half{half}.json"
            for stage in per_half
            for half in HALVES
        ],
        *[f"{RECORDS}/solve_{run}_half{half}.json" for run in RUNS for half in HALVES],
        *[
            f"{RECORDS}/backproject_{run}_half{half}_shard{shard}.json"
            for run in RUNS
            for half in HALVES
            for shard in SHARDS
        ],
        *(
            [f"{RECORDS}/fit_inverse_half{half}.json" for half in HALVES]
            if USE_INVERSE
            else []
        ),
    ]


def particle_store(wildcards):
    """The half set's particle store when store.enabled, else nothing (the stacks)."""
    return [f"{OUT}/store/half{wildcards.half}"] if CFG["store"]["enabled"] else []


@shell_text
def store_flag(wildcards, input):
    """``--store`` when train-vae reads the half set's particle store."""
    return optional_flag("store", input.store[0] if input.store else None)
