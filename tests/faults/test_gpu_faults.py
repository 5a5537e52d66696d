"""Faults a GPU shows, made visible on the CPU (issue 29, class 5).

Out of memory in an epoch (forced with ``DYNAMIGHT_FORCE_OOM_AT_STEP``) re-runs the epoch
with half the batch; the batch prefetcher of the failed attempt must be stopped, joined and
empty before the retry, not left blocked on a full queue holding batches. Out of memory at
batch 1 is a one-line input error naming the settings to lower.
"""

from __future__ import annotations

import gc
import logging
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dynamight_core.data import batches as batches_module
from dynamight_core.data.batches import PREFETCH_THREAD_NAME, BatchReader, Prefetcher
from dynamight_core.errors import InputError
from dynamight_core.io.stacks import ImageSource
from dynamight_core.io.star import read_particles
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.training import oom, warmup
from dynamight_core.training.warmup import WarmupSettings, warm_up

TRAIN = np.arange(0, 96)
VALIDATION = np.arange(96, 128)


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == PREFETCH_THREAD_NAME and t.is_alive()]


@pytest.fixture
def reader(small_dataset: Path) -> BatchReader:
    particles = read_particles(small_dataset / "particles.star")
    return BatchReader(particles, ImageSource(particles), torch.device("cpu"))


@pytest.fixture
def prefetchers(monkeypatch: pytest.MonkeyPatch) -> list[Prefetcher]:
    """Every :class:`Prefetcher` made while the test runs, in order."""
    made: list[Prefetcher] = []
    original = Prefetcher.__init__

    def recording(self: Prefetcher, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(batches_module.Prefetcher, "__init__", recording)
    return made


def _force_out_of_memory_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    monkeypatch.setenv(oom.FORCE_OOM_VARIABLE, str(step))
    monkeypatch.setitem(oom._steps_taken, "count", 0)
    monkeypatch.setitem(oom._steps_taken, "fired", 0)


def _model() -> GaussianModel:
    generator = torch.Generator().manual_seed(0)
    positions = (torch.rand(60, 3, generator=generator) - 0.5) * 40.0
    return GaussianModel(positions, torch.ones(60), torch.tensor([3.0, 5.0]), 64, 2.0)


# ---- the prefetcher on every way out of a loop -----------------------------------------


def test_breaking_out_of_the_batches_stops_the_prefetcher(
    reader: BatchReader, prefetchers: list[Prefetcher]
) -> None:
    with closing(reader.tracked(TRAIN, 8, "early stop")) as batches:
        for _ in batches:
            break
    (prefetcher,) = prefetchers
    assert not prefetcher.thread.is_alive() and prefetcher.queue.empty()
    assert _prefetch_threads() == []


def test_an_error_in_the_loop_body_stops_the_prefetcher(
    reader: BatchReader, prefetchers: list[Prefetcher]
) -> None:
    batches = reader.tracked(TRAIN, 8, "failing")
    with pytest.raises(ValueError, match="in the step"), closing(batches):
        for number, _ in enumerate(batches):
            if number == 1:
                raise ValueError("in the step")
    (prefetcher,) = prefetchers
    assert not prefetcher.thread.is_alive() and prefetcher.queue.empty()


def test_an_abandoned_loop_stops_its_prefetcher_when_collected(
    reader: BatchReader, prefetchers: list[Prefetcher]
) -> None:
    batches = reader.batches(TRAIN, 8)
    next(batches)
    del batches
    gc.collect()
    (prefetcher,) = prefetchers
    assert not prefetcher.thread.is_alive() and prefetcher.queue.empty()


def test_a_reading_error_reaches_the_loop_and_stops_the_thread(
    reader: BatchReader, prefetchers: list[Prefetcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(indices: np.ndarray) -> None:
        raise OSError("stack unreadable")

    monkeypatch.setattr(reader, "read", failing)
    with pytest.raises(OSError, match="stack unreadable"):
        list(reader.batches(TRAIN, 8))
    assert not prefetchers[0].thread.is_alive()


# ---- out of memory: the recovery releases what the failed epoch held ---------------------


def test_out_of_memory_recovery_joins_the_prefetcher_and_halves_the_batch(
    reader: BatchReader,
    prefetchers: list[Prefetcher],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The third step fails with the queue full: at the retry nothing of it is left."""
    _force_out_of_memory_at(monkeypatch, 3)
    at_retry: list[tuple[bool, int]] = []  # (alive, batches held) of each prefetcher
    threads_at_retry: list[threading.Thread] = []
    real_batch_after = warmup.batch_after

    def spying(*args: Any) -> int:
        smaller = real_batch_after(*args)
        at_retry.extend((p.thread.is_alive(), p.queue.qsize()) for p in prefetchers)
        threads_at_retry.extend(_prefetch_threads())
        return smaller

    monkeypatch.setattr(warmup, "batch_after", spying)
    settings = WarmupSettings(epochs=2, batch_size=16, noise_particles=32)
    with caplog.at_level(logging.WARNING, logger="dynamight_core.training.oom"):
        result = warm_up(_model(), reader, TRAIN, VALIDATION, settings)
    assert "out of memory at warmup.batch_size 16" in caplog.text
    assert "halving it to 8" in caplog.text
    assert at_retry, "the forced out-of-memory error never reached the recovery"
    assert all(not alive and held == 0 for alive, held in at_retry), at_retry
    assert threads_at_retry == []
    assert [entry["epoch"] for entry in result.history] == [1, 2]
    failed = len(at_retry)  # prefetchers made before the retry
    sizes = [max(len(chunk) for chunk in p.chunks) for p in prefetchers]
    assert sizes[failed - 1] == 16  # the failed epoch's
    assert set(sizes[failed:]) == {8}  # both epochs after it (and their validation) at 8
    assert all(not p.thread.is_alive() and p.queue.empty() for p in prefetchers)
    assert _prefetch_threads() == []


def test_out_of_memory_at_batch_one_is_a_one_line_input_error(
    reader: BatchReader, prefetchers: list[Prefetcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    _force_out_of_memory_at(monkeypatch, 1)
    settings = WarmupSettings(epochs=1, batch_size=1, noise_particles=8)
    with pytest.raises(InputError) as error:
        warm_up(_model(), reader, TRAIN[:8], VALIDATION[:4], settings)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("warmup.batch_size: out of memory")
    assert "gaussians.n_gaussians" in message and "resources.warmup.mem_mb" in message
    assert "Lower one of warmup.batch_size" not in message  # already 1
    assert isinstance(error.value.__cause__, torch.OutOfMemoryError)
    assert _prefetch_threads() == []


def test_other_errors_are_not_taken_for_out_of_memory() -> None:
    with pytest.raises(ValueError, match="shapes"):
        oom.batch_after(ValueError("shapes do not match"), 16, "vae.batch_size")
    with pytest.raises(RuntimeError, match="CUDA error: an illegal"):
        oom.batch_after(RuntimeError("CUDA error: an illegal memory access"), 16, "x")
