"""The fault suite's one workflow run: pure noise, as a RELION External job in an odd folder.

One run serves two checks: a dataset without signal runs to the end with a "no resolution /
no gain" report (``test_noise_run.py``), and paths with spaces, quotes, ``$`` and
non-ASCII letters reach every stage whole and nothing outside the job folder changes
(``test_paths.py``). The images are simulated (box 32, 600 particles) and then replaced by
Gaussian noise of the same standard deviation (the STAR file, poses and CTFs kept), in a
RELION project folder named ``my data ü/run 1 'q' $x`` beside decoy files named like the
first word of each path. The shipped ``relion/dynamight_external`` runs the whole workflow
from there as RELION does (``--o External/job001/ --in_parts ...``): the real snakemake,
from the repository root, with every path absolute and odd.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

import pytest
import yaml
from fault_tools import ODD, TINY, decoys, noise_dataset, snapshot
from star_tools import relion_project
from workflow_tools import CI_OVERLAY, REPO

JOB = "External/job001"
STAR = "Refine3D/job010/run_data.star"
SETTINGS = "tiny settings.yaml"


@pytest.fixture(scope="session")
def odd_noise_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The whole workflow on pure noise, as a RELION External job in an odd folder."""
    root = tmp_path_factory.mktemp("paths")
    project = root / ODD
    decoys(root, root / ODD.parent, project)
    noise_dataset(root / "simulated")
    relion_project(project, root / "simulated", STAR, JOB)
    settings = {**TINY, **yaml.safe_load(CI_OVERLAY)}
    (project / SETTINGS).write_text(yaml.safe_dump(settings, allow_unicode=True))
    out = project / JOB
    before = snapshot(root, out)
    # the real snakemake; no lock: it runs in the repository, beside other tests' runs
    snakemake = shlex.join([sys.executable, "-m", "snakemake", "--nolock"])
    wrapper = [str(REPO / "relion" / "dynamight_external"), "--o", f"{JOB}/"]
    started = time.monotonic()
    result = subprocess.run(
        [*wrapper, "--in_parts", STAR, "--config_file", SETTINGS, "--j", "2"],
        cwd=project,
        env={**os.environ, "DYNAMIGHT_SNAKEMAKE": snakemake},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    return {
        "out": out,
        "before": before,
        "after": snapshot(root, out),
        "result": result,
        "seconds": time.monotonic() - started,
    }
