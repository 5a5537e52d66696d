"""Progress with rate and time left (ETA) inside long loops.

:class:`Progress` counts items (particles, steps) and batches of a loop and reports how
far it is, how fast it goes and how long it has left. The mode is chosen automatically:

* on an interactive terminal (the logging stream is a TTY and ``SLURM_JOB_ID`` is unset),
  one line rewritten in place (carriage return), at most ``TTY_INTERVAL_S`` apart, shown only
  once the loop has run ``TTY_DELAY_S``, and ended with a newline. The line is erased
  before any log record is written to the same stream, and drawn again afterwards;
* otherwise (SLURM jobs, log files, pipes) an INFO log line every ``interval_s`` (default
  ``DEFAULT_INTERVAL_S``; the environment variable ``DYNAMIGHT_PROGRESS_INTERVAL_S``
  overrides it), the first one after one interval, so a loop shorter than the interval
  logs nothing; a loop that logged gets a last line when it ends. For example::

      train-vae epoch 3: 12,800/90,000 particles (14%), 100 batches, 212 particles/s,
      1m00s elapsed, ETA 6m04s

The rate is an exponential moving average over batches (items and seconds averaged
separately, as tqdm does), so a slow first batch (data loading, CUDA start-up) does not
dominate the ETA. The clock is injectable for tests. Standard library only: every layer
of the package may import it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TextIO, TypeVar

T = TypeVar("T")

ENV_INTERVAL = "DYNAMIGHT_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 60.0
TTY_INTERVAL_S = 0.2  # at most 5 redraws per second
TTY_DELAY_S = 1.0  # no line for loops shorter than this
SMOOTHING = 0.3  # weight of the newest batch in the moving averages
ERASE_LINE = "\r\x1b[2K"

_default_logger = logging.getLogger(__name__)


def interval_from_environment(default_s: float = DEFAULT_INTERVAL_S) -> float:
    """Seconds between two progress log lines: ``$DYNAMIGHT_PROGRESS_INTERVAL_S`` or the default."""
    value = os.environ.get(ENV_INTERVAL)
    if value is None or not value.strip():
        return default_s
    try:
        interval_s = float(value)
    except ValueError:
        interval_s = -1.0
    if interval_s < 0 or interval_s != interval_s:
        _default_logger.warning(
            "%s=%r is not a number of seconds >= 0; using %g s", ENV_INTERVAL, value, default_s
        )
        return default_s
    return interval_s


def logging_stream() -> TextIO:
    """The stream the root logger writes to (its first stream handler's), else stderr."""
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if isinstance(handler, logging.StreamHandler) and stream is not None:
            return stream
    return sys.stderr


def is_interactive(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal outside a SLURM job."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("SLURM_JOB_ID")


def format_duration(seconds: float) -> str:
    """``42s``, ``6m02s``, ``3h05m`` or ``2d03h``."""
    whole = round(max(seconds, 0.0))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def format_rate(per_s: float) -> str:
    """``212``, ``21.2``, ``0.25``: three significant digits, thousands separated."""
    return f"{per_s:,.0f}" if per_s >= 100 else f"{per_s:.3g}"


class _LineEraser(logging.Filter):
    """Handler filter that erases the progress line before the handler writes a record."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.erase()
        return True


class Progress:
    """Counts a loop's items and batches and reports done/total, rate, elapsed and ETA.

    Use as a context manager and call :meth:`advance` after each batch::

        with Progress(len(rows), "warm-up epoch 1/10", logger=logger) as progress:
            for batch in batches:
                ...
                progress.advance(len(batch))

    Parameters
    ----------
    total
        Items the loop will do; nothing is reported when it is 0.
    what
        What the loop is, the start of every line (``"train-vae epoch 3"``).
    unit
        Name of the items (``"particles"``, ``"steps"``).
    logger
        Logger of the periodic lines (log mode).
    interval_s
        Seconds between two log lines in log mode; ``None``: ``$DYNAMIGHT_PROGRESS_INTERVAL_S``
        or ``DEFAULT_INTERVAL_S``.
    clock
        Monotonic clock in seconds (injectable for tests).
    stream
        Where the terminal line goes; ``None``: the root logging handler's stream.
    interactive
        Force the terminal (``True``) or the log (``False``) mode; ``None``: automatic.
    """

    def __init__(
        self,
        total: int,
        what: str,
        unit: str = "particles",
        logger: logging.Logger | None = None,
        interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        stream: TextIO | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.total = max(int(total), 0)
        self.what, self.unit = what, unit
        self.logger = logger or _default_logger
        self.interval_s = interval_from_environment() if interval_s is None else interval_s
        self.clock = clock
        self.stream = stream if stream is not None else logging_stream()
        self.interactive = is_interactive(self.stream) if interactive is None else interactive
        self.done = self.batches = 0
        self.started_s = self.last_advance_s = self.last_report_s = 0.0
        self.mean_items = self.mean_seconds = 0.0
        self.line_width = 0  # characters of the terminal line now shown (0: none)
        self.reported = 0  # lines drawn or logged
        self.reported_done = 0  # items done at the last line
        self.eraser = _LineEraser(self)
        self.handlers: list[logging.Handler] = []

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the clock (and, on a terminal, erase the line before every log record)."""
        self.started_s = self.last_advance_s = self.last_report_s = self.clock()
        if self.interactive and self.total > 0:
            candidates: list[logging.Handler | None] = [*logging.getLogger().handlers]
            candidates = candidates or [logging.lastResort]
            self.handlers = [
                handler
                for handler in candidates
                if handler is not None and getattr(handler, "stream", None) is self.stream
            ]
            for handler in self.handlers:
                handler.addFilter(self.eraser)

    def advance(self, count: int = 1) -> None:
        """Record one finished batch of ``count`` items; report if it is time to."""
        now = self.clock()
        self.done += count
        self.batches += 1
        self._smooth(count, now - self.last_advance_s)
        self.last_advance_s = now
        if self.total > 0:
            self._maybe_report(now)

    def _smooth(self, count: int, seconds: float) -> None:
        """Update the moving averages of items and seconds per batch."""
        if self.batches == 1:
            self.mean_items, self.mean_seconds = float(count), seconds
            return
        self.mean_items += SMOOTHING * (count - self.mean_items)
        self.mean_seconds += SMOOTHING * (seconds - self.mean_seconds)

    def rate_per_s(self) -> float | None:
        """Smoothed items per second (``None`` before the first batch or without time)."""
        if self.batches == 0 or self.mean_seconds <= 0:
            return None
        return self.mean_items / self.mean_seconds

    def elapsed_s(self) -> float:
        """Seconds since the start."""
        return self.clock() - self.started_s

    def eta_s(self) -> float | None:
        """Seconds left at the smoothed rate (``None`` when the rate is unknown)."""
        rate = self.rate_per_s()
        if rate is None or rate <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def message(self) -> str:
        """``what: done/total unit (pct%), N batches, rate unit/s, elapsed, ETA``."""
        percent = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.what}: {self.done:,}/{self.total:,} {self.unit} ({percent:.0f}%)"]
        if self.batches != self.done:
            parts.append(f"{self.batches:,} batch{'' if self.batches == 1 else 'es'}")
        rate, eta = self.rate_per_s(), self.eta_s()
        parts.append(f"{format_rate(rate)} {self.unit}/s" if rate is not None else "? /s")
        parts.append(f"{format_duration(self.elapsed_s())} elapsed")
        if self.done < self.total:
            parts.append(f"ETA {format_duration(eta)}" if eta is not None else "ETA ?")
        return ", ".join(parts)

    def _maybe_report(self, now: float) -> None:
        """Draw the terminal line or log a line when their interval has passed."""
        since_start, since_last = now - self.started_s, now - self.last_report_s
        if self.interactive:
            shown_recently = self.line_width > 0 and since_last < TTY_INTERVAL_S
            if since_start >= TTY_DELAY_S and not shown_recently:
                self._draw(now)
        elif since_last >= self.interval_s:
            self._log(now)

    def _draw(self, now: float) -> None:
        """Rewrite the terminal line in place (cut to the terminal's width)."""
        line = self.message()[: shutil.get_terminal_size().columns - 1]
        self.stream.write("\r" + line + " " * max(self.line_width - len(line), 0))
        self.stream.flush()
        self.line_width = len(line)
        self._reported(now)

    def _log(self, now: float) -> None:
        """One INFO line through logging."""
        self.logger.info("%s", self.message())
        self._reported(now)

    def _reported(self, now: float) -> None:
        """Note that a line was drawn or logged at ``now``."""
        self.last_report_s = now
        self.reported += 1
        self.reported_done = self.done

    def erase(self) -> None:
        """Remove the terminal line (before a log record is written to the same stream)."""
        if self.line_width > 0:
            self.stream.write(ERASE_LINE)
            self.stream.flush()
            self.line_width = 0

    def close(self) -> None:
        """Finish: the terminal line gets its last state and a newline; the log a last line."""
        for handler in self.handlers:
            handler.removeFilter(self.eraser)
        self.handlers = []
        if self.total == 0 or self.reported == 0:
            return
        now = self.clock()
        if self.interactive:
            self._draw(now)
            self.stream.write("\n")
            self.stream.flush()
            self.line_width = 0
        elif self.done != self.reported_done:
            self._log(now)


def track(
    items: Iterable[T],
    total: int,
    what: str,
    size: Callable[[T], int] | None = None,
    unit: str = "particles",
    logger: logging.Logger | None = None,
    interval_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[T]:
    """Yield ``items`` and report progress; each item counts ``size(item)`` (default 1).

    ``total`` is the sum of the sizes (particles, steps); the other parameters are those
    of :class:`Progress`.
    """
    with Progress(total, what, unit, logger, interval_s, clock) as progress:
        for item in items:
            yield item
            progress.advance(1 if size is None else size(item))
