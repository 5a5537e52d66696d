"""Running snakemake as a child process that RELION's Abort, Ctrl-C or SIGTERM can stop.

Snakemake runs in its own process group; a stop request sends it SIGINT (it then cancels
its running jobs, SLURM jobs included), and SIGKILL after ``STOP_GRACE_S`` or on a second
request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dynamight_core.io.relion_pipeline import abort_requested

logger = logging.getLogger(__name__)

POLL_S = 1.0  # how often the abort file is looked for while snakemake runs
STOP_GRACE_S = 300.0  # after Ctrl-C, how long snakemake may take to cancel its jobs


def run_snakemake(command: list[str], repo: Path, job_dir: Path) -> str:
    """Run ``command`` in ``repo``; stop it as Ctrl-C does on an abort request or a signal.

    Returns ``"success"``, ``"aborted"`` or what went wrong.
    """
    env = dict(os.environ)
    # the rules run `python -m dynamight_core ...`: this interpreter's environment first
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)

    # handlers set before the child starts: it then gets the default dispositions (a
    # handled signal is reset on exec), not a SIGINT ignored as in a background job
    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            previous[signum] = signal.signal(signum, on_signal)
    sys.stdout.flush()
    sys.stderr.flush()
    stop_reason = ""
    try:
        # its own process group: Ctrl-C reaches snakemake and its local jobs through us
        process = subprocess.Popen(command, cwd=repo, env=env, start_new_session=True)
        deadline = float("inf")
        handled = 0
        while True:
            try:
                return_code = process.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                pass
            if not stop_reason and abort_requested(job_dir):
                stop_reason = "aborted"
                logger.warning("RELION asked to abort: stopping snakemake, which cancels its jobs")
                deadline = interrupt(process, signal.SIGINT)
            if len(received) > handled:
                handled = len(received)
                name = signal.Signals(received[-1]).name
                if stop_reason:
                    logger.warning("%s again: killing snakemake and its local jobs", name)
                    deadline = interrupt(process, signal.SIGKILL)
                else:
                    stop_reason = f"stopped by {name}"
                    logger.warning("%s: stopping snakemake, which cancels its jobs", name)
                    deadline = interrupt(process, signal.SIGINT)
            if time.monotonic() > deadline:
                logger.warning("snakemake still runs %.0f s after Ctrl-C: killing it", STOP_GRACE_S)
                deadline = interrupt(process, signal.SIGKILL)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if stop_reason:
        return stop_reason
    if return_code == 0:
        return "success"
    if return_code < 0:
        return f"snakemake was killed by {signal.Signals(-return_code).name}"
    return f"snakemake failed (exit status {return_code})"


def interrupt(process: subprocess.Popen[bytes], signum: int) -> float:
    """Send ``signum`` to snakemake's process group; returns the time it has to end."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
    return float("inf") if signum == signal.SIGKILL else time.monotonic() + STOP_GRACE_S
