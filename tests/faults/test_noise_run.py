"""Issue 29: a dataset without signal runs to the end and the report says so.

The run is conftest.py's (``odd_noise_run``): images replaced by Gaussian noise of the same
standard deviation (the STAR file, with its poses and CTFs, kept), so no image holds any
signal. Every stage must get through, from the consensus reconstruction and the automatic
mask to training, the deformed and null-control reconstructions, exploration and the
report, and the report must say that there is no resolution and no gain, and that the
motion is not shown to be real.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from workflow_tools import ok

from dynamight_core.cli import main
from dynamight_core.io.mrc import read_volume, write_volume

VERDICT = "No resolution / no gain"


def test_pure_noise_runs_to_a_no_gain_report(odd_noise_run: dict[str, object]) -> None:
    result, results = odd_noise_run["result"], odd_noise_run["out"]
    assert isinstance(result, subprocess.CompletedProcess) and isinstance(results, Path)
    ok(result)
    for name in ("report.html", "summary.json", "report/summary.txt", "provenance.json"):
        assert (results / name).is_file(), name

    summary = json.loads((results / "summary.json").read_text())
    gain = summary["gain"]
    assert gain["verdict"].startswith(VERDICT), gain["verdict"]
    assert gain["map_better"] is False and gain["motion_real"] is False
    assert gain["significant"] is False and gain["resolution_change_a"] is None
    # no pair of half maps passes 0.143 by chance in the first shells of the small box
    for label in ("consensus", "deformed", "null"):
        record = json.loads((results / f"postprocess/{label}/postprocess.json").read_text())
        assert record["resolution_0143_a"] is None and record["has_resolution"] is False, label
    assert gain["unresolved"] == ["consensus", "deformed"]
    assert any("no resolution" in warning for warning in summary["warnings"])

    text = (results / "report/summary.txt").read_text()
    assert text.startswith(VERDICT)
    page = (results / "report.html").read_text()
    assert VERDICT in page and "The motion is not shown to be real" in page


def test_make_mask_on_noise_falls_back_to_a_sphere(tmp_path: Path) -> None:
    """The automatic threshold finds nothing in this white-noise map (seed 0): the stage
    writes a soft sphere and a warning instead of stopping the run; the same map with an
    explicit threshold above its maximum stays bad input (exit code 2)."""
    noise = np.random.default_rng(0).normal(size=(32,) * 3).astype(np.float32)
    write_volume(tmp_path / "noise.mrc", noise, 3.0)
    common = ["--mask-lowpass-a", "15", "--mask-extend-a", "3", "--mask-soft-edge-a", "6"]

    def make_mask(threshold: str, name: str) -> int:
        mask_map, mask_json = str(tmp_path / f"{name}.mrc"), str(tmp_path / f"{name}.json")
        argv = ["make-mask", "--map", str(tmp_path / "noise.mrc"), "--mask-threshold", threshold]
        return main([*argv, *common, "--out-mask", mask_map, "--out-json", mask_json])

    assert make_mask("null", "auto") == 0
    record = json.loads((tmp_path / "auto.json").read_text())
    assert record["fallback"] == "sphere" and "pure noise" in record["warning"]
    mask = read_volume(tmp_path / "auto.mrc").data
    assert mask[16, 16, 16] == 1.0 and mask[0, 0, 0] == 0.0
    assert record["volume_fraction"] == pytest.approx(float((mask >= 0.5).mean()), abs=1e-5)
    assert 0.1 < record["volume_fraction"] < 0.4

    assert make_mask("100", "explicit") == 2
    assert not (tmp_path / "explicit.mrc").exists()
