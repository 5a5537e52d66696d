"""Logging set-up for stages (progress inside long loops: :mod:`dynamight_core.progress`)."""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import logging
import os
import socket
import sys
import time
from pathlib import Path

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


class LogInUseError(RuntimeError):
    """Another running copy of the stage holds the log file this one was told to write."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is the log of another running copy of this stage ({holder}); this copy "
            "stops without touching it. End that copy first, or wait for it"
        )


LOCK_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
"""``errno`` of a non-blocking ``flock`` that another process holds."""


def lock_path_of(log: Path) -> Path:
    """The lock of ``log``: ``.<name>.lock`` beside it, a second name of the log itself."""
    return log.with_name(f".{log.name}.lock")


def lock_holder() -> str:
    """Who holds a lock: host, PID, SLURM job and start time of this process."""
    job = os.environ.get("SLURM_JOB_ID")
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
    return (
        f"host {socket.gethostname()}, PID {os.getpid()}"
        + (f", SLURM job {job}" if job else "")
        + f", since {started}"
    )


def _link(source: Path, name: Path) -> None:
    """Make ``name`` a second name of the file ``source`` (replacing what ``name`` was)."""
    fresh = name.with_name(f".{name.name}.{os.getpid()}.new")
    fresh.unlink(missing_ok=True)
    os.link(source, fresh)
    fresh.replace(name)


def _put_back(log: Path, lock: Path, inode: int) -> None:
    """At exit: ``log`` names this copy's log again (whoever replaced it), the lock goes."""
    try:
        if log.stat().st_ino != inode:
            _link(lock, log)
    except FileNotFoundError:
        with contextlib.suppress(OSError):
            _link(lock, log)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        if lock.stat().st_ino == inode:
            lock.unlink()


def hold_log(path: str | Path) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to the log ``path``.

    The log is taken before it is opened for writing: an exclusive ``flock`` on
    ``.<name>.lock`` beside it, which is the log file itself under a second name while
    this copy runs (removed at its end). A second copy given the same log finds the lock
    held and stops with :class:`LogInUseError` before writing anything: the running copy's
    log is neither truncated nor overwritten. Snakemake deletes a job's log before it runs
    the job; a refused copy then puts the running copy's log back under its name, and the
    running copy does so at its end too. On a file system without ``flock`` or hard links
    the log is written unlocked, as a shell redirect would.

    Raises
    ------
    LogInUseError
        When another running process holds the log.
    """
    log = Path(path)
    log.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path_of(log)
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in LOCK_HELD:
            os.close(descriptor)
            _write_to(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
            return
        first = os.pread(descriptor, 400, 0).decode(errors="replace").partition("\n")[0]
        os.close(descriptor)
        if not os.path.lexists(log):
            with contextlib.suppress(OSError):
                os.link(lock, log)
        holder = first.removeprefix(HOLDER_PREFIX) if first.startswith(HOLDER_PREFIX) else ""
        raise LogInUseError(log, holder or "no holder recorded") from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{HOLDER_PREFIX}{lock_holder()}\n".encode())
    try:
        _link(lock, log)
    except OSError:
        # no hard links here: the lock stays a lock, the log a file of its own
        _write_to(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        return
    atexit.register(_put_back, log, lock, os.fstat(descriptor).st_ino)
    _write_to(descriptor)


HOLDER_PREFIX = "log written by "


def _write_to(descriptor: int) -> None:
    """Point file descriptors 1 and 2 (and ``sys.stdout``/``sys.stderr``) at ``descriptor``."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
