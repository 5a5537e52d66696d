"""Stage ``relion-external``: the whole workflow as a RELION-5 "External" job.

RELION runs, from its project folder::

    relion/dynamight_external --o External/job012/ --in_parts Refine3D/job010/run_data.star
        [--in_3dref MAP] [--in_mask MASK] [--<section.key> VALUE ...] --j THREADS

(``relion/dynamight_external`` runs ``python -m dynamight_core relion-external``;
docs/relion.md says which GUI fields to fill in). This stage merges the settings (the
shipped ``config.yaml`` with its demo values put back to the schema's defaults, then
``--config_file``, then the Params tab's ``--section.key value`` pairs, then the job's
folder and inputs as absolute paths), validates them with the project's schema, writes the
complete configuration to ``<job>/dynamight_config.yaml`` and runs snakemake from the
repository root with ``--configfile`` set to it, ``--cores THREADS``, ``--rerun-incomplete``
and ``--profile`` when given. Snakemake's output goes to this process's stdout and stderr
(RELION's run.out and run.err). On success the job folder gets ``RELION_OUTPUT_NODES.star``
(the maps, mask, local-resolution map and pseudo-atom models that exist) and then
``RELION_JOB_EXIT_SUCCESS``; on failure ``RELION_JOB_EXIT_FAILURE`` and a non-zero exit
status (2 for bad settings, before snakemake starts; 1 when snakemake fails or is
stopped). RELION's "Abort" (``RELION_JOB_ABORT_NOW``) stops snakemake as Ctrl-C does
(its running jobs are cancelled, SLURM jobs included) and ends in
``RELION_JOB_EXIT_ABORTED``. The environment variable ``DYNAMIGHT_SNAKEMAKE`` replaces
the snakemake command (default ``<this python> -m snakemake``), e.g. for a dry run.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from dynamight_core.config import describe
from dynamight_core.config_cli import add_file_argument, add_run_argument
from dynamight_core.relion.job_settings import (
    absolute_from,
    load_yaml_settings,
    merge_settings,
    nested_setting,
    relion_defaults,
    setting_at,
    with_absolute_paths,
    yaml_module,
)

logger = logging.getLogger(__name__)

HELP = "run the whole workflow as a RELION-5 External job (--o External/jobNNN/ ...)"

# settings RELION's own fields set (--o, --in_parts, --in_3dref, --in_mask): no option
SET_BY_RELION = {
    "output_dir": "--o",
    "inputs.particles": "--in_parts",
    "inputs.reference_map": "--in_3dref",
    "inputs.mask": "--in_mask",
}
SETTINGS = dict(describe())
# every setting but those: option --<dotted key>, stored under the dotted key
SETTING_OPTIONS = tuple(dotted for dotted in SETTINGS if dotted not in SET_BY_RELION)
SNAKEMAKE_ENV = "DYNAMIGHT_SNAKEMAKE"
CONFIG_NAME = "dynamight_config.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """RELION's External-job options, run options and one option per setting."""
    # exact option names only: a misspelt Params label must fail, not match a prefix
    parser.allow_abbrev = False
    add_file_argument(
        parser,
        "--o",
        "the job's folder, as RELION gives it (External/jobNNN/), relative to the current "
        "folder (the RELION project); every output goes there [config: output_dir]",
    )
    add_file_argument(
        parser,
        "--in_parts",
        "particle STAR file (RELION's 'Input particles', e.g. Refine3D/jobNNN/run_data.star) "
        "[config: inputs.particles]",
    )
    add_file_argument(
        parser,
        "--in_3dref",
        "map to validate against (RELION's 'Input 3D reference'; default: none) "
        "[config: inputs.reference_map]",
        default=None,
    )
    add_file_argument(
        parser,
        "--in_mask",
        "soft mask for post-processing, masked FSC and local resolution (RELION's 'Input 3D "
        "mask'; default: made from the consensus map) [config: inputs.mask]",
        default=None,
    )
    add_file_argument(
        parser,
        "--config_file",
        "YAML file of settings merged over the shipped config.yaml (same layout); the "
        "Params tab's settings win over it; relative paths are relative to the project",
        default=None,
    )
    add_run_argument(
        parser,
        "--j",
        "cores snakemake may use on this host (RELION's 'Number of threads'): snakemake --cores",
        default="1",
    )
    add_run_argument(
        parser,
        "--profile",
        "snakemake profile: 'slurm' (each stage its own SLURM job), 'profiles/local' (a "
        "workstation's GPUs), or a folder; may be given twice to layer a site profile",
        action="append",
        default=None,
    )
    add_run_argument(
        parser,
        "--pipeline_control",
        "set by RELION's pipeliner; ignored (the job folder is --o)",
        default=None,
    )
    for dotted in SETTING_OPTIONS:
        spec = SETTINGS[dotted]
        add_run_argument(
            parser,
            f"--{dotted}",
            f"{spec.help} [config: {dotted}; {spec.kind}{' or null' if spec.nullable else ''}; "
            "unset: config.yaml's value]",
            default=None,
            dest=dotted,
            metavar=spec.kind.upper(),
        )


def run(args: argparse.Namespace) -> None:
    """Run the workflow for RELION and leave the job's exit mark and output nodes."""
    from dynamight_core.io import relion_pipeline as pipeline

    project = Path.cwd()
    job_dir = absolute_from(args.o, project)
    job_dir.mkdir(parents=True, exist_ok=True)
    removed = pipeline.clear_exit_marks(job_dir)
    stale_nodes = job_dir / pipeline.OUTPUT_NODES_FILE
    if stale_nodes.exists():  # written again on success
        stale_nodes.unlink()
        removed.append(pipeline.OUTPUT_NODES_FILE)
    if removed:
        logger.info("removed %s of the previous attempt", ", ".join(removed))
    if pipeline.abort_requested(job_dir):
        logger.warning("removed %s left by an earlier abort", pipeline.ABORT_NOW)
        (job_dir / pipeline.ABORT_NOW).unlink()
    node_prefix = _node_prefix(job_dir, project)
    try:
        outcome = _run_workflow(args, project, job_dir, node_prefix)
        if outcome == "success":
            nodes = pipeline.existing_output_nodes(job_dir, node_prefix)
            pipeline.write_output_nodes(job_dir, nodes)
            pipeline.mark_exit(job_dir, success=True)
            logger.info(
                "%s: %s and %s written; output nodes: %s",
                node_prefix,
                pipeline.OUTPUT_NODES_FILE,
                pipeline.EXIT_SUCCESS,
                ", ".join(f"{name} ({label})" for name, label in nodes) or "none",
            )
            return
    except BaseException:
        pipeline.mark_exit(job_dir, success=False)
        raise
    if outcome == "aborted":
        pipeline.mark_aborted(job_dir)
        logger.error(
            "%s: stopped on RELION's abort request; %s written. 'Continue' resumes "
            "(finished stages are kept)",
            node_prefix,
            pipeline.EXIT_ABORTED,
        )
    else:
        pipeline.mark_exit(job_dir, success=False)
        logger.error(
            "%s: %s; %s written. The failed stage's log is in %s/logs/ (snakemake's "
            "output above names it); correct the cause and press 'Continue': finished "
            "stages are not run again",
            node_prefix,
            outcome,
            pipeline.EXIT_FAILURE,
            node_prefix,
        )
    # not an exception for the CLI to report with a traceback: snakemake said what failed
    raise SystemExit(1)


def _node_prefix(job_dir: Path, project: Path) -> str:
    """How RELION names the job folder: relative to the project (``External/job012``)."""
    try:
        return str(PurePosixPath(job_dir.relative_to(project)))
    except ValueError:
        return job_dir.as_posix()


def _repository() -> Path:
    """The source checkout holding the Snakefile (the folder above the package)."""
    import dynamight_core
    from dynamight_core.errors import InputError

    repo = Path(dynamight_core.__file__).resolve().parent.parent
    for name in ("Snakefile", "config.yaml"):
        if not (repo / name).is_file():
            raise InputError(
                repo,
                name,
                "the workflow's Snakefile and config.yaml beside the dynamight_core package",
                f"no {name} in {repo} (dynamight_core is installed without its workflow)",
                "Run the wrapper from a source checkout installed with `make install` (an "
                "editable install): relion/dynamight_external in that checkout does this",
            )
    return repo


def _threads(text: str) -> int:
    from dynamight_core.errors import InputError

    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (math.isfinite(value) and value >= 1 and value.is_integer()):
        raise InputError("--j", "threads", "a whole number >= 1", repr(text))
    return int(value)


def _job_config(
    args: argparse.Namespace, project: Path, job_dir: Path, repo: Path, node_prefix: str
) -> tuple[dict[str, Any], list[str]]:
    """The validated configuration of the run, and the settings the job set (for the log).

    Later layers win: config.yaml, its demo values undone, --config_file, the Params tab's
    settings, RELION's fields (--o, --in_parts, --in_3dref, --in_mask).
    """
    from dynamight_core.config import ConfigError, validate
    from dynamight_core.errors import InputError

    user: dict[str, Any] = {}
    if args.config_file:
        loaded = load_yaml_settings(absolute_from(args.config_file, project), "--config_file")
        user = with_absolute_paths(loaded, project)
    params: dict[str, Any] = {}
    for dotted in SETTING_OPTIONS:
        value = getattr(args, dotted)
        if value is not None:
            params = merge_settings(params, nested_setting(dotted, value))
    params = with_absolute_paths(params, project)
    relion: dict[str, Any] = {
        "output_dir": str(job_dir),
        "inputs": {"particles": str(absolute_from(args.in_parts, project))},
    }
    if args.in_3dref:
        relion["inputs"]["reference_map"] = str(absolute_from(args.in_3dref, project))
    if args.in_mask:
        relion["inputs"]["mask"] = str(absolute_from(args.in_mask, project))
    for dotted, option in SET_BY_RELION.items():
        given = setting_at(user, dotted)
        if given is not None and setting_at(relion, dotted) is not None:
            logger.warning("%s replaces %s: %s of --config_file", option, dotted, given)
    merged = load_yaml_settings(repo / "config.yaml", "config.yaml")
    for layer in (relion_defaults(project), user, params, relion):
        merged = merge_settings(merged, layer)
    try:
        config = validate(merged, source=f"{node_prefix} settings", base=project)
    except ConfigError as error:
        for problem in error.problems:
            logger.error("bad setting: %s", problem)
        keys = sorted({problem.split(":")[0] for problem in error.problems})
        raise InputError(
            f"settings of {node_prefix}",
            ", ".join(keys),
            "what config.yaml documents for each setting",
            "; ".join(error.problems),
            "Correct them on the Params tab or in --config_file",
        ) from None
    explicit = merge_settings(merge_settings(user, params), relion)
    set_by_job = [
        f"{dotted}: {setting_at(config, dotted)}"
        for dotted in SETTINGS
        if setting_at(explicit, dotted) is not None or dotted == "inputs.project_root"
    ]
    return config, set_by_job


def _profiles(given: list[str] | None, repo: Path, project: Path) -> list[str]:
    """``--profile`` arguments; a folder in the project (not in the repository) made absolute."""
    arguments: list[str] = []
    for profile in given or []:
        path = Path(profile).expanduser()
        if not path.is_absolute() and not (repo / path).is_dir() and (project / path).is_dir():
            profile = str(project / path)
        arguments += ["--profile", profile]
    return arguments


def _write_config(
    path: Path, config: Mapping[str, Any], set_by_job: list[str], command: list[str]
) -> None:
    from dynamight_core.io.files import write_text_atomic

    header = [
        "# The complete configuration of this RELION External job, written by",
        "# `dynamight-core relion-external`; snakemake read it with --configfile over the",
        "# shipped config.yaml. Set by the job (RELION's fields, Params tab, --config_file):",
        *(f"#   {item}" for item in set_by_job),
        "# The command (run in the repository root):",
        f"#   {shlex.join(command)}",
    ]
    body = yaml_module().safe_dump(dict(config), sort_keys=False, allow_unicode=True)
    write_text_atomic(path, "\n".join(header) + "\n" + body)


def _run_workflow(args: argparse.Namespace, project: Path, job_dir: Path, node_prefix: str) -> str:
    """Validate, write the configuration, run snakemake: ``"success"``, ``"aborted"`` or why not."""
    threads = _threads(args.j)
    repo = _repository()
    config, set_by_job = _job_config(args, project, job_dir, repo, node_prefix)
    config_path = job_dir / CONFIG_NAME
    base = shlex.split(os.environ.get(SNAKEMAKE_ENV, ""))
    command = [
        *(base or [sys.executable, "-m", "snakemake"]),
        "--configfile",
        str(config_path),
        "--cores",
        str(threads),
        "--rerun-incomplete",
        *_profiles(args.profile, repo, project),
    ]
    _write_config(config_path, config, set_by_job, command)
    logger.info("settings of this job: %s", "; ".join(set_by_job))
    logger.info("configuration: %s", config_path)
    logger.info("running in %s: %s", repo, shlex.join(command))
    from dynamight_core.relion.snakemake_process import run_snakemake

    return run_snakemake(command, repo, job_dir)
