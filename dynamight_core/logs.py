"""Logging set-up for stages (progress inside long loops: :mod:`dynamight_core.progress`)."""

from __future__ import annotations

import logging
import sys

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
