"""The core package, the CLI and ``explore view --help`` work without napari or Qt.

The viewer is an optional extra: nothing outside ``dynamight_core.viewer.app`` (and only
inside its functions) may import napari, Qt or their GUI stack. The checks run in a
subprocess whose import system refuses those packages, as on a node without them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

GUI_PACKAGES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy", "magicgui")

BLOCKER = f"""
import importlib.abc
import sys

BLOCKED = {GUI_PACKAGES!r}


class GuiBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked by the test (no GUI packages here)")
        return None


sys.meta_path.insert(0, GuiBlocker())
"""

IMPORT_EVERYTHING = """
import importlib
import pkgutil

import dynamight_core
from dynamight_core.cli import main

failed = []
modules = []
for info in pkgutil.walk_packages(dynamight_core.__path__, "dynamight_core."):
    modules.append(info.name)
    try:
        importlib.import_module(info.name)
    except BaseException as err:
        failed.append(f"{info.name}: {type(err).__name__}: {err}")
assert "dynamight_core.viewer.app" in modules and "dynamight_core.viewer.session" in modules

try:
    main(["explore", "view", "--help"])
except SystemExit as err:
    if err.code not in (0, None):
        failed.append(f"explore view --help: exit {err.code}")
else:
    failed.append("explore view --help did not exit")

loaded = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
assert not failed, failed
assert not loaded, loaded
print(f"imported {len(modules)} modules")
"""

RUN_VIEW = """
from dynamight_core.cli import main

sys.exit(main(["explore", "view", "--model", "model.pt", "--latents", "latents.csv"]))
"""

FAKE_NAPARI = """
import sys
import types

sys.modules["napari"] = types.ModuleType("napari")  # installed, as far as the check sees
for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
    os.environ.pop(name, None)
"""


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this venv, from ``cwd``."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_every_module_and_the_viewer_help_import_no_gui(tmp_path: Path) -> None:
    result = _python(BLOCKER + IMPORT_EVERYTHING, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "imported" in result.stdout
    assert "--latents" in result.stdout  # the help text was printed


def test_the_project_environment_has_no_gui_packages() -> None:
    found = [name for name in GUI_PACKAGES if importlib.util.find_spec(name) is not None]
    if not found:
        return
    message = f"GUI packages installed in this environment: {found}"
    if os.environ.get("CI") or os.environ.get("DYNAMIGHT_REQUIRE_NO_QT"):
        pytest.fail(message + " (the core environment must not need or ship them)")
    pytest.skip(message + "; a developer may have installed the viewer extra")


def test_explore_view_without_napari_says_how_to_install_it(tmp_path: Path) -> None:
    result = _python(BLOCKER + "import os\n" + RUN_VIEW, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install" in result.stderr
    for command in ("explore maps", "explore movie", "explore select"):
        assert command in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is Linux's")
def test_explore_view_without_a_display_stops_before_qt(tmp_path: Path) -> None:
    code = BLOCKER + "import os\n" + FAKE_NAPARI + RUN_VIEW
    result = _python(code, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no display" in result.stderr
    assert "explore select" in result.stderr
