"""The fault suite's one workflow run: pure noise, in a folder with an odd name.

One run serves two checks: a dataset without signal runs to the end with a "no resolution /
no gain" report (``test_noise_run.py``), and paths with spaces, quotes, ``$`` and
non-ASCII letters reach every stage whole and nothing outside the output folder changes
(``test_paths.py``). The images are simulated (box 32, 600 particles) and then replaced by
Gaussian noise of the same standard deviation (the STAR file, poses and CTFs kept), in
``my data ü/run 1 'q' $x/data ü``; output_dir is absolute and holds a space
(``.../keep out``), beside decoy files named like the first word of each path.
"""

from __future__ import annotations

import shutil
import time

import pytest
import yaml
from fault_tools import ODD, TINY, decoys, noise_dataset, snapshot
from workflow_tools import CI_OVERLAY, REPO, snakemake


@pytest.fixture(scope="session")
def odd_noise_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The whole workflow on pure noise in an odd folder; the tree before and after."""
    root = tmp_path_factory.mktemp("paths")
    workdir = root / ODD
    out = workdir / "keep out"
    decoys(root, root / ODD.parent, workdir)
    star = noise_dataset(workdir / "data ü")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    (workdir / "ci.yaml").write_text(CI_OVERLAY)
    settings = {
        **TINY,
        "output_dir": str(out),
        "inputs": {"particles": str(star), "reference_map": None, "reference_state": None},
    }
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True))
    before = snapshot(root)
    started = time.monotonic()
    result = snakemake(workdir, "--cores", "2", configfiles=("config.yaml", "ci.yaml", "tiny.yaml"))
    return {
        "out": out,
        "before": before,
        "after": snapshot(root, out, workdir / ".snakemake"),
        "result": result,
        "seconds": time.monotonic() - started,
    }
