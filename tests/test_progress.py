"""Progress with ETA: arithmetic, smoothing, the two modes, and one wired loop.

A fake clock stands in for time (no sleeping); a ``StringIO`` stands in for the terminal.
"""

from __future__ import annotations

import io
import logging

import pytest
import torch
from test_gaussians import _model

from dynamight_core.progress import (
    ENV_INTERVAL,
    Progress,
    format_duration,
    interval_from_environment,
    track,
)
from dynamight_core.training.fit_map import FitSettings, fit_model_to_map

LOGGER = "dynamight_core.test_progress"


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def tick(self, seconds: float) -> None:
        self.now_s += seconds


class Terminal(io.StringIO):
    """A ``StringIO`` that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv(ENV_INTERVAL, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


def _run(progress: Progress, clock: FakeClock, batches: list[tuple[float, int]]) -> None:
    """Advance ``progress`` by batches of (seconds, items)."""
    for seconds, items in batches:
        clock.tick(seconds)
        progress.advance(items)


def _progress(clock: FakeClock, total: int = 100, **options: object) -> Progress:
    settings: dict = {"interval_s": 60.0, "interactive": False, **options}
    return Progress(total, "fit", logger=logging.getLogger(LOGGER), clock=clock, **settings)


def test_eta_equals_elapsed_after_half_the_items_at_a_constant_rate() -> None:
    clock = FakeClock()
    with _progress(clock, total=1000) as progress:
        _run(progress, clock, [(2.0, 100)] * 5)
        assert progress.rate_per_s() == pytest.approx(50.0)
        assert progress.elapsed_s() == pytest.approx(10.0)
        assert progress.eta_s() == pytest.approx(progress.elapsed_s())


def test_a_slow_first_batch_does_not_dominate_the_rate() -> None:
    clock = FakeClock()
    with _progress(clock, total=10_000) as progress:
        _run(progress, clock, [(100.0, 10)] + [(1.0, 10)] * 20)
        rate = progress.rate_per_s()
    overall = 210 / 120.0  # what a plain average would say
    assert rate is not None and rate == pytest.approx(10.0, rel=0.1)
    assert rate > 5 * overall


def test_message_shows_counts_rate_elapsed_and_eta() -> None:
    clock = FakeClock()
    with _progress(clock, total=90_000) as progress:
        _run(progress, clock, [(3.0, 640)] * 20)
        message = progress.message()
    assert message.startswith("fit: 12,800/90,000 particles (14%), 20 batches, 213 particles/s")
    assert message.endswith("1m00s elapsed, ETA 6m02s")
    assert format_duration(3 * 3600 + 5 * 60) == "3h05m" and format_duration(42.4) == "42s"


def test_log_mode_under_slurm_logs_once_per_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock, terminal = FakeClock(), Terminal()
    with _progress(clock, total=300, interactive=None, stream=terminal) as progress:
        assert not progress.interactive
        _run(progress, clock, [(10.0, 1)] * 250)  # 2500 s: 41 intervals of 60 s
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 41 + 1  # one per interval and the last state
    assert lines[0] == "fit: 6/300 particles (2%), 0.1 particles/s, 1m00s elapsed, ETA 49m00s"
    assert lines[-1].startswith("fit: 250/300 particles (83%)")
    assert terminal.getvalue() == ""


def test_log_mode_is_silent_for_a_loop_shorter_than_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    with _progress(clock, total=100) as progress:
        _run(progress, clock, [(5.0, 10)] * 10)
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_environment_variable_sets_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    assert interval_from_environment() == 60.0
    monkeypatch.setenv(ENV_INTERVAL, "2.5")
    assert interval_from_environment() == 2.5
    assert Progress(10, "fit", interactive=False).interval_s == 2.5
    monkeypatch.setenv(ENV_INTERVAL, "soon")
    assert interval_from_environment() == 60.0


def test_terminal_mode_rewrites_one_line_and_ends_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock, terminal = FakeClock(), Terminal()
    with _progress(clock, total=100, interactive=None, stream=terminal) as progress:
        assert progress.interactive
        _run(progress, clock, [(0.1, 1)] * 100)  # 10 s: drawn after 1 s, at most 5 per second
    text = terminal.getvalue()
    assert text.startswith("\rfit: 10/100 particles (10%)")
    assert text.count("\r") == 1 + 9 * 5 + 1  # first, 5 per second, the last state
    assert text.endswith("\rfit: 100/100 particles (100%), 10 particles/s, 10s elapsed\n")
    assert text.count("\n") == 1
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_terminal_line_is_erased_before_a_log_record() -> None:
    clock, terminal = FakeClock(), Terminal()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with _progress(clock, total=10, interactive=True, stream=terminal) as progress:
            _run(progress, clock, [(2.0, 1)])
            logging.getLogger(LOGGER).warning("something happened")
            _run(progress, clock, [(0.01, 1)])
    finally:
        root.removeHandler(handler)
    lines = terminal.getvalue()
    assert "\r\x1b[2Ksomething happened\n\rfit: 2/10" in lines
    assert handler.filters == []


def test_nothing_is_reported_for_a_zero_total(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    for interactive in (True, False):
        clock, terminal = FakeClock(), Terminal()
        with _progress(clock, 0, interval_s=0.0, interactive=interactive, stream=terminal) as p:
            _run(p, clock, [(5.0, 0)] * 3)
        assert terminal.getvalue() == ""
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_track_counts_item_sizes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = FakeClock()
    batches = [[1, 2, 3], [4, 5], [6]]
    seen = []
    for batch in track(
        batches, 6, "fit", len, logger=logging.getLogger(LOGGER), clock=clock, interval_s=0.0
    ):
        clock.tick(1.0)
        seen.append(batch)
    assert seen == batches
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert [line.split(",")[0] for line in lines] == [
        "fit: 3/6 particles (50%)",
        "fit: 5/6 particles (83%)",
        "fit: 6/6 particles (100%)",
    ]


def test_consensus_fit_reports_progress(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_INTERVAL, "0")
    caplog.set_level(logging.INFO, logger="dynamight_core.training.fit_map")
    target = _model(60).volume().detach()
    fit_model_to_map(_model(50), target, torch.ones_like(target), FitSettings(3, log_every=100))
    lines = [r.getMessage() for r in caplog.records if "consensus fit:" in r.getMessage()]
    assert lines and lines[-1].startswith("consensus fit: 3/3 steps (100%)")
