"""The napari viewer driven as a person would: a click, a polygon, a save, PC1 played.

Skipped where napari is not installed (the project environment: the viewer is the
optional extra ``pip install -e '.[viewer]'``). The viewer runs in a subprocess, with Qt
on its ``offscreen`` platform, so that Qt never starts in the test process. napari's
canvas still needs an X display for OpenGL: without ``DISPLAY`` the test starts its own
Xvfb for the subprocess (skipped when there is none). Offscreen, the 3-D canvas renders
black: the test checks the layers' data and the written files, not pixels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import starfile
from test_viewer_session import N_STAR, write_viewer_files

pytest.importorskip("napari")
pytest.importorskip("qtpy")

DRIVER = """
import json
import sys

import numpy as np
from matplotlib.backend_bases import MouseButton, MouseEvent
from qtpy.QtWidgets import QApplication

from dynamight_core.viewer.app import STATE_LAYER, launch
from dynamight_core.viewer.session import ExploreSession

model, latents, star, out, shot = sys.argv[1:]
session = ExploreSession(model, latents, star)
app = launch(session, out, block=False)
viewer = app.viewer


def click(x, y):
    px, py = app.axes.transData.transform((x, y))
    MouseEvent("motion_notify_event", app.canvas, px, py)._process()
    MouseEvent("button_press_event", app.canvas, px, py, MouseButton.LEFT)._process()
    MouseEvent("button_release_event", app.canvas, px, py, MouseButton.LEFT)._process()


assert viewer.dims.ndisplay == 3
state = viewer.layers[STATE_LAYER]
assert state.rendering == "iso"
before = np.array(state.data, copy=True)
np.testing.assert_allclose(before, session.volume_at(np.zeros(2)))

# a click on the plot shows the model at that point
click(1.5, -0.5)
np.testing.assert_allclose(app.point, [1.5, -0.5], atol=1e-6)
after = np.array(state.data, copy=True)
np.testing.assert_allclose(after, session.volume_at(app.point))

# a polygon drawn on the plot (closed on its first vertex) selects particles
app.polygon_button.setChecked(True)
vertices = [(-1.0, -0.5), (2.0, -0.5), (2.0, 0.8), (-1.0, 0.8)]
for x, y in [*vertices, vertices[0]]:
    click(x, y)
assert app.mask is not None
np.testing.assert_array_equal(app.mask, session.select_polygon(np.array(vertices)))
np.testing.assert_allclose(app.point, [1.5, -0.5], atol=1e-6)  # polygon clicks only
counts = app.save_selection()
assert counts is not None and str(counts[0]) in app.status.text(), app.status.text()

# PC1 as a 4-D layer for napari's slider; a click shows the state again
app.play(0, n_frames=5)
trajectory = viewer.layers["PC1 trajectory"]
assert trajectory.data.shape == (5, *before.shape)
assert not state.visible
app.polygon_button.setChecked(False)
click(0.0, 0.0)
assert state.visible and not trajectory.visible

QApplication.processEvents()
viewer.screenshot(path=shot, canvas_only=False, flash=False)
print(json.dumps({
    "changed": float(np.abs(after - before).max()),
    "selected": int(app.mask.sum()),
    "particles": len(app.mask),
    "counts": list(counts),
}))
viewer.close()
"""


@pytest.fixture(scope="module")
def display() -> Iterator[dict[str, str]]:
    """Environment for the viewer: Qt offscreen on the session's X display or a new Xvfb."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    if os.environ.get("DISPLAY"):
        yield env
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("napari's canvas needs an X display: set DISPLAY or install xvfb")
    read, write = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            pytest.skip("Xvfb did not start")
        yield {**env, "DISPLAY": f":{number}"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_viewer_click_polygon_save_and_play(display: dict[str, str], tmp_path: Path) -> None:
    files = write_viewer_files(tmp_path)
    out, shot = tmp_path / "selection", tmp_path / "viewer.png"
    arguments = [str(files[name]) for name in ("model", "latents", "star")]
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, *arguments, str(out), str(shot)],
        env=display,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["changed"] > 0  # the click re-rendered the state layer
    assert 0 < report["selected"] < report["particles"]
    assert report["counts"] == [report["selected"], N_STAR - report["selected"]]
    selected = starfile.read(out / "selected.star", always_dict=True)["particles"]
    complement = starfile.read(out / "complement.star", always_dict=True)["particles"]
    assert len(selected) == report["selected"]
    assert len(selected) + len(complement) == N_STAR
    assert shot.stat().st_size > 0
