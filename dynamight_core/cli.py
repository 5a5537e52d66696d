"""Command-line interface: ``python -m dynamight_core <stage> ...``.

Every stage module defines ``HELP``, ``add_arguments(parser)`` and ``run(args)``; its
settings' options come from the configuration schema (:mod:`dynamight_core.config_cli`),
and it imports the library only inside ``run``, so ``--help`` imports no torch. The CLI
sets up logging, records the command, version and device, and turns bad input (or a
checkpoint folder held by another running copy) into one clear error line (exit code 2),
a diverged training (NaN or infinite loss) into one line (exit code 3) and any other
failure into a logged traceback (exit 1).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import platform
import socket
import sys
import time
from collections.abc import Sequence

from dynamight_core._version import __version__
from dynamight_core.config_cli import add_file_argument, add_run_argument

logger = logging.getLogger("dynamight_core")

STAGES = {
    "simulate": "dynamight_core.stages.simulate",
    "split-halves": "dynamight_core.stages.split",
    "reconstruct": "dynamight_core.stages.reconstruct",
    "fsc": "dynamight_core.stages.fsc",
    "fit-consensus": "dynamight_core.stages.fit_consensus",
    "warmup": "dynamight_core.stages.warmup",
    "store-particles": "dynamight_core.stages.store_particles",
    "train-vae": "dynamight_core.stages.train_vae",
    "deformation-error": "dynamight_core.stages.deformation_error",
    "fit-inverse": "dynamight_core.stages.fit_inverse",
    "backproject-deformed": "dynamight_core.stages.backproject_deformed",
    "solve-deformed": "dynamight_core.stages.solve_deformed",
    "fsc-deformed": "dynamight_core.stages.fsc_deformed",
    "align-halves": "dynamight_core.stages.align_halves",
    "state-maps": "dynamight_core.stages.state_maps",
    "fsc-states": "dynamight_core.stages.fsc_states",
    "make-mask": "dynamight_core.stages.make_mask",
    "postprocess": "dynamight_core.stages.postprocess",
    "local-resolution": "dynamight_core.stages.local_resolution",
    "latent-space": "dynamight_core.stages.latent_space",
    "report": "dynamight_core.stages.report",
    "provenance": "dynamight_core.stages.provenance",
    "explore": "dynamight_core.stages.explore",
    "relion-external": "dynamight_core.stages.relion_external",
}

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
EXIT_DIVERGED = 3


def write_run_record(path: str, stage: str, started: float) -> None:
    """JSON record of a finished stage: what ran, where, on which device, with which code."""
    import torch

    from dynamight_core.device import describe_device
    from dynamight_core.io.files import write_json_atomic

    record = {
        "stage": stage,
        "argv": sys.argv,
        "dynamight_core": __version__,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 3),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "device": describe_device(),
    }
    write_json_atomic(path, record)


def _add_command(
    subparsers: argparse._SubParsersAction, name: str, module_name: str, depth: int = 0
) -> None:
    """A stage's parser; a stage module with ``ACTIONS`` gets one sub-command per action."""
    module = importlib.import_module(module_name)
    sub = subparsers.add_parser(
        name,
        help=module.HELP,
        description=module.HELP,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    actions = getattr(module, "ACTIONS", None)
    if actions:
        nested = sub.add_subparsers(dest=f"action{depth}", required=True, metavar="ACTION")
        for action, action_module in actions.items():
            _add_command(nested, action, action_module, depth + 1)
        return
    add_run_argument(sub, "--log-level", "logging level", default="INFO")
    add_file_argument(
        sub,
        "--log",
        "write stdout and stderr to this file, taken only when no other running copy "
        "holds it (a second copy then stops with exit code 2 and leaves it alone)",
        default=None,
    )
    add_file_argument(
        sub,
        "--record",
        "write a JSON record of this run (host, device, versions, time)",
        default=None,
    )
    module.add_arguments(sub)
    sub.set_defaults(module=module)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per stage (and per action of a stage)."""
    parser = argparse.ArgumentParser(prog="dynamight-core", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dynamight-core {__version__}")
    subparsers = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, module_name in STAGES.items():
        _add_command(subparsers, name, module_name)
    return parser


def commands() -> list[tuple[str, ...]]:
    """Every runnable command: ``("fsc",)``, ``("explore", "maps")``, ..."""
    found: list[tuple[str, ...]] = []

    def visit(prefix: tuple[str, ...], module_name: str) -> None:
        actions = getattr(importlib.import_module(module_name), "ACTIONS", None)
        if not actions:
            found.append(prefix)
            return
        for action, action_module in actions.items():
            visit((*prefix, action), action_module)

    for name, module_name in STAGES.items():
        visit((name,), module_name)
    return found


def command_name(args: argparse.Namespace) -> str:
    """``explore maps`` for a nested command, the stage's name otherwise."""
    parts = [args.stage]
    depth = 0
    while getattr(args, f"action{depth}", None):
        parts.append(getattr(args, f"action{depth}"))
        depth += 1
    return " ".join(parts)


def log_argument(argv: Sequence[str]) -> str | None:
    """The ``--log`` file of a command line, read before anything else is parsed."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--log", default=None)
    known, _ = pre.parse_known_args(list(argv))
    return known.log


def main(argv: Sequence[str] | None = None) -> int:
    """Run one stage; returns the process exit code."""
    from dynamight_core.errors import CheckpointInUseError, InputError, TrainingDivergedError
    from dynamight_core.logs import LogInUseError, hold_log, setup_logging

    argv = sys.argv[1:] if argv is None else list(argv)
    log = log_argument(argv)
    if log:
        # before parsing: a usage error goes to the log too, as with `> log 2>&1`
        try:
            hold_log(log)
        except LogInUseError as err:
            sys.stderr.write(f"dynamight-core: not started: {err}\n")
            return EXIT_BAD_INPUT
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    logger.info("dynamight-core %s: %s", __version__, " ".join(sys.argv))
    started = time.time()
    try:
        args.module.run(args)
        if args.record:
            write_run_record(args.record, command_name(args), started)
    except CheckpointInUseError as err:
        logger.error("another copy of this stage is running: %s", err)
        return EXIT_BAD_INPUT
    except InputError as err:
        logger.error("bad input: %s", err)
        return EXIT_BAD_INPUT
    except TrainingDivergedError as err:
        logger.error("training diverged: %s", err)
        return EXIT_DIVERGED
    except Exception:
        logger.exception(
            "stage '%s' failed; the traceback above shows where. If the input "
            "looks right, report it with this log.",
            command_name(args),
        )
        return EXIT_FAILURE
    logger.info("stage '%s' finished", command_name(args))
    return 0
