"""Issue 29, class 1: paths with spaces, quotes, ``$`` and non-ASCII letters; class 4: logs.

Every path a rule gives the shell is quoted (``{input.x:q}``...; the Snakefile refuses a
rule that does not, ``check_shell_quoting`` in workflow/rules/common.smk). The whole
workflow runs, on tiny settings, as a RELION External job in a project folder named
``my data ü/run 1 'q' $x`` (conftest.py), beside decoy files named like the first word of
those paths, and no file outside the job folder may change. A stage given
``--log`` takes its log only when no running copy holds it: a refused second copy exits 2
with one line and leaves the running copy's log as it was.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from workflow_tools import BIN, REPO, ok, snakemake

from dynamight_core.logs import lock_path_of


def test_odd_paths_run_and_touch_nothing_outside_the_output_folder(
    odd_noise_run: dict[str, object],
) -> None:
    """The whole workflow as a RELION External job (conftest.py) in ``my data ü/run 1 'q' $x``."""
    # first: an unquoted path would have hit the decoys even if the run then failed
    assert odd_noise_run["after"] == odd_noise_run["before"], "files outside the job changed"
    result, out = odd_noise_run["result"], odd_noise_run["out"]
    assert isinstance(result, subprocess.CompletedProcess) and isinstance(out, Path)
    ok(result)
    assert (out / "RELION_JOB_EXIT_SUCCESS").is_file()
    assert (out / "RELION_OUTPUT_NODES.star").is_file()
    for made in ("consensus/fsc.json", "vae/half1/latents.csv", "store/half1/store.json"):
        assert (out / made).is_file(), made
    for made in ("report.html", "deformed/half2.mrc", "explore/half2/movie/movie.cxc"):
        assert (out / made).is_file(), made
    # the stages got each path whole, ü and quote and $ included
    log = (out / "logs/train_vae_half1.log").read_text()
    assert f"--checkpoint-dir {out}/.checkpoints/train_vae_half1 " in log
    assert not list((out / "logs").glob(".*")), "a log's lock was left behind"


def test_the_snakefile_refuses_an_unquoted_path(tmp_path: Path) -> None:
    """check_shell_quoting: a rule whose shell gets a path without :q stops the parse."""
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(REPO / "Snakefile", copy / "Snakefile")
    shutil.copy(REPO / "config.yaml", copy / "config.yaml")
    shutil.copytree(REPO / "workflow", copy / "workflow")
    (copy / "dynamight_core").symlink_to(REPO / "dynamight_core")
    rules = copy / "workflow/rules/prepare.smk"
    text = rules.read_text()
    command = [str(BIN / "snakemake"), "--snakefile", str(copy / "Snakefile"), "-n"]
    command += ["--directory", str(copy)]

    def parse() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

    assert parse().returncode == 0
    unquoted = text.replace("--out {output.halves:q}", "--out {output.halves}", 1)
    assert unquoted != text
    rules.write_text(unquoted)
    failed = parse()
    assert failed.returncode != 0
    assert "split_halves ({output.halves})" in failed.stdout + failed.stderr
    # a stage command that redirects into its log (not --log) is refused too
    rules.write_text(text.replace("--log {log:q}", "> {log:q} 2>&1", 1))
    failed = parse()
    assert failed.returncode != 0
    assert "instead of redirecting" in failed.stdout + failed.stderr


# --- class 4: a refused second copy leaves the running copy's log alone ----------------

HOLDER = """
import sys, time
from dynamight_core.logs import hold_log
hold_log(sys.argv[1])
print("the first copy's own line", flush=True)
open(sys.argv[2], "w").close()
time.sleep(60)
"""


def _first_copy(log: Path, tmp_path: Path) -> subprocess.Popen[bytes]:
    """A running copy of a stage holding ``log`` (it has written one line to it)."""
    ready = tmp_path / "ready"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(log), str(ready)])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return process


def _second_copy(log: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """train-vae given the same log (and no usable input: it never gets that far)."""
    command = [sys.executable, "-m", "dynamight_core", "train-vae", "--log", str(log)]
    command += ["--star", str(tmp_path / "none.star"), "--halves", "x", "--half", "1"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_a_refused_second_copy_leaves_the_running_copys_log(tmp_path: Path) -> None:
    log = tmp_path / "logs dir ü" / "train_vae_half1.log"
    first = _first_copy(log, tmp_path)
    try:
        written = log.read_bytes()
        assert written.startswith(b"log written by ") and b"first copy's own line" in written
        second = _second_copy(log, tmp_path)
        assert second.returncode == 2
        lines = second.stderr.splitlines()
        assert len(lines) == 1 and "not started" in lines[0], second.stderr
        assert f"PID {first.pid}" in lines[0]
        assert log.read_bytes() == written
        # as Snakemake does before it runs a job: the log's name removed; the refused
        # copy puts the running copy's log back under it
        log.unlink()
        assert _second_copy(log, tmp_path).returncode == 2
        assert log.read_bytes() == written
    finally:
        first.kill()
        first.wait()
    # the holder gone, the next copy takes the log (and writes it afresh)
    third = _second_copy(log, tmp_path)
    assert third.returncode == 2 and third.stderr == ""
    text = log.read_text()
    assert text.startswith("log written by ") and "first copy's own line" not in text


def test_a_finished_copy_leaves_its_log_under_its_name_and_no_lock(tmp_path: Path) -> None:
    log = tmp_path / "a b" / "x.log"
    script = (
        "import os, sys\nfrom dynamight_core.logs import hold_log\n"
        "hold_log(sys.argv[1])\nprint('done', flush=True)\n"
        "os.unlink(sys.argv[1])\n"  # replaced while it ran: put back at its end
        "open(sys.argv[1], 'w').write('someone else')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(log)], check=True, timeout=60)
    assert log.read_text().splitlines()[1:] == ["done"]
    assert not lock_path_of(log).exists()


def test_snakemake_job_refused_by_a_running_copy_keeps_its_log(
    odd_noise_run: dict[str, object], tmp_path: Path
) -> None:
    """train_vae run again (with a retry) while a copy holds its log: the log stays whole.

    Snakemake deletes the log before each attempt; the refused stage puts the running
    copy's log back, and unless_bad_input leaves no bad-input mark with it.
    """
    out = odd_noise_run["out"]
    assert isinstance(out, Path)
    log = out / "logs/train_vae_half1.log"
    first = _first_copy(log, tmp_path)
    try:
        written = log.read_bytes()
        # as the External job ran it: from the repository, with the job's configuration
        result = snakemake(
            REPO,
            "--nolock",
            "--cores",
            "1",
            "--retries",
            "1",
            "--forcerun",
            "train_vae",
            str(out / "vae/half1/latents.csv"),
            configfiles=(str(out / "dynamight_config.yaml"),),
        )
        assert isinstance(result, subprocess.CompletedProcess)
        assert result.returncode != 0
        assert "not started" in result.stdout + result.stderr
        assert log.read_bytes() == written
        assert not (out / ".bad_input/train_vae_half1").exists()
    finally:
        first.kill()
        first.wait()
