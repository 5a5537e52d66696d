"""The command-line chain simulate -> split-halves -> reconstruct -> fsc."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynamight_core.cli import commands, main


def test_chain_writes_all_outputs(small_dataset: Path, tmp_path: Path) -> None:
    star = str(small_dataset / "particles.star")
    assert main(["split-halves", "--star", star, "--out", str(tmp_path / "halves.csv")]) == 0
    maps = {name: str(tmp_path / f"{name}.mrc") for name in ("half1", "half2", "full")}
    assert (
        main(
            [
                "reconstruct",
                "--star",
                star,
                "--halves",
                str(tmp_path / "halves.csv"),
                "--out-half1",
                maps["half1"],
                "--out-half2",
                maps["half2"],
                "--out-full",
                maps["full"],
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "fsc",
                "--half1",
                maps["half1"],
                "--half2",
                maps["half2"],
                "--mask",
                str(small_dataset / "mask.mrc"),
                "--full",
                maps["full"],
                "--reference",
                str(small_dataset / "truth" / "average.mrc"),
                "--out-tsv",
                str(tmp_path / "fsc.tsv"),
                "--out-json",
                str(tmp_path / "fsc.json"),
                "--out-png",
                str(tmp_path / "fsc.png"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "fsc.json").read_text())
    assert 4.0 <= summary["resolution_0143_a"] < 60.0
    assert (tmp_path / "fsc.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


@pytest.mark.parametrize("command", [" ".join(c) for c in commands()])
def test_every_stage_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code == 0
    assert "--log-level" in capsys.readouterr().out
