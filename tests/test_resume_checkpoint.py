"""Checkpoint folders: one writer at a time, unreadable checkpoints set aside, RNG state."""

from __future__ import annotations

import logging
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dynamight_core.device import rng_state, set_rng_state
from dynamight_core.errors import CheckpointInUseError
from dynamight_core.io.checkpoint import Checkpointer

SETTINGS = {"lr": 0.1}


def _checkpointer(folder: Path) -> Checkpointer:
    return Checkpointer(folder, "test-stage", SETTINGS)


def test_second_checkpointer_on_a_held_folder_fails_naming_the_holder(tmp_path: Path) -> None:
    first = _checkpointer(tmp_path / "ck")
    with pytest.raises(CheckpointInUseError) as error:
        _checkpointer(tmp_path / "ck")
    message = str(error.value)
    assert str(tmp_path / "ck") in message
    assert f"host {socket.gethostname()}" in message and f"PID {os.getpid()}" in message
    first.release()
    _checkpointer(tmp_path / "ck").release()


def test_another_process_cannot_take_a_held_folder(tmp_path: Path) -> None:
    """flock excludes other processes (not only other handles of this one)."""
    holder = _checkpointer(tmp_path / "ck")
    probe = (
        "import sys\n"
        "from dynamight_core.errors import CheckpointInUseError\n"
        "from dynamight_core.io.checkpoint import Checkpointer\n"
        "try:\n"
        f"    Checkpointer({str(tmp_path / 'ck')!r}, 'test-stage', {{}})\n"
        "except CheckpointInUseError as err:\n"
        "    print(err)\n"
        "    sys.exit(2)\n"
    )
    taken = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert taken.returncode == 2, taken.stdout + taken.stderr
    assert f"PID {os.getpid()}" in taken.stdout
    holder.clear()
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert free.returncode == 0, free.stdout + free.stderr


def test_cleared_folder_can_be_claimed_again(tmp_path: Path) -> None:
    first = _checkpointer(tmp_path / "ck")
    first.save("state", {"x": torch.ones(2)})
    first.clear()
    assert not (tmp_path / "ck").exists()
    second = _checkpointer(tmp_path / "ck")
    assert second.load("state") is None
    second.release()


def _saved_bytes(folder: Path) -> bytes:
    writer = _checkpointer(folder)
    writer.save("state", {"x": torch.arange(1000.0)})
    data = (folder / "state.pt").read_bytes()
    writer.clear()
    return data


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not a dict"])
def test_unreadable_checkpoint_is_set_aside_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = _saved_bytes(tmp_path / "good")
    folder = tmp_path / "ck"
    folder.mkdir()
    path = folder / "state.pt"
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(500))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        torch.save([1, 2, 3], path)
    checkpointer = _checkpointer(folder)
    with caplog.at_level(logging.WARNING):
        assert checkpointer.load("state") is None
    assert not path.exists()
    aside = list(folder.glob("state.pt.corrupt-*"))
    assert len(aside) == 1
    assert "unreadable" in caplog.text and aside[0].name in caplog.text
    checkpointer.save("state", {"x": torch.zeros(1)})
    assert torch.equal(checkpointer.load("state")["x"], torch.zeros(1))
    checkpointer.release()


def test_intact_checkpoint_round_trips(tmp_path: Path) -> None:
    checkpointer = _checkpointer(tmp_path / "ck")
    checkpointer.save("state", {"x": torch.arange(3.0), "epoch": 4})
    state = checkpointer.load("state")
    assert state is not None and state["epoch"] == 4
    assert torch.equal(state["x"], torch.arange(3.0))
    checkpointer.release()


def test_rng_state_restores_every_generator(tmp_path: Path) -> None:
    torch.save(rng_state(), tmp_path / "rng.pt")
    first = (torch.rand(4), np.random.rand(4), np.random.randn(), random.random())  # noqa: NPY002
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(4), np.random.rand(4), np.random.randn(), random.random())  # noqa: NPY002
    assert torch.equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2:] == again[2:]
