"""Logging set-up and progress reporting for stages.

On an interactive terminal a progress bar is shown; under SLURM (or whenever stderr is
not a terminal) progress is reported as periodic log lines, so job logs stay readable.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _PackageHandler(logging.StreamHandler):
    """The stderr handler :func:`setup_logging` installs (replaced, not added, on a re-call)."""


def setup_logging(level: str = "INFO") -> None:
    """Send log records of the package to stderr with timestamps.

    Parameters
    ----------
    level
        Logging level name (``DEBUG``, ``INFO``, ``WARNING``...).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _PackageHandler):
            root.removeHandler(handler)
    package_handler = _PackageHandler(sys.stderr)
    package_handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    root.addHandler(package_handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)


def progress(
    items: Iterable[T],
    total: int,
    description: str,
    logger: logging.Logger,
    every_s: float = 30.0,
) -> Iterator[T]:
    """Iterate with a progress bar on a terminal, else with periodic log lines.

    Parameters
    ----------
    items
        The iterable to walk through.
    total
        Number of items expected (for the percentage).
    description
        Short label shown with the progress.
    logger
        Logger used for the periodic lines when stderr is not a terminal.
    every_s
        Minimum number of seconds between two log lines.
    """
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=description, leave=False)
        return
    start = last = time.monotonic()
    for count, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s or count == total:
            rate = count / max(now - start, 1e-9)
            logger.info(
                "%s: %d/%d (%.0f%%, %.1f/s)",
                description,
                count,
                total,
                100.0 * count / max(total, 1),
                rate,
            )
            last = now
