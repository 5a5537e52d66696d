"""Stage ``provenance``: one JSON record of a workflow run.

It holds the resolved configuration, the SHA-256 of every input (the STAR file and each
stack it refers to, maps, masks), the versions of the packages, the git commit of the
code, the seeds, and the host and device of every stage (from their run records).
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from dynamight_core._version import __version__
from dynamight_core.config_cli import add_file_argument, add_run_argument
from dynamight_core.io.files import sha256_file, write_json_atomic

HELP = "write the provenance record of a workflow run"
PACKAGES = (
    "dynamight-core",
    "torch",
    "numpy",
    "scipy",
    "pandas",
    "mrcfile",
    "starfile",
    "torch-ctf",
    "gemmi",
    "snakemake",
    "snakemake-executor-plugin-slurm",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the provenance stage."""
    add_run_argument(parser, "--config-json", "the resolved configuration (JSON)", required=True)
    add_file_argument(
        parser, "--star", "particle STAR file (it and its stacks are hashed)", default=None
    )
    add_file_argument(
        parser,
        "--project-root",
        "RELION project folder for relative rlnImageName paths [config: inputs.project_root]",
        default=None,
    )
    add_file_argument(parser, "--inputs", "other input files to hash", nargs="*", default=[])
    add_file_argument(parser, "--records", "run records of the stages", nargs="*", default=[])
    add_file_argument(parser, "--code-dir", "folder of the workflow's git checkout", default=".")
    add_file_argument(parser, "--out", "the provenance record (JSON)")


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(code_dir: str) -> dict[str, Any]:
    def run(*command: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", "-C", code_dir, *command],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip()

    status = run("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def _input_hashes(star: str | None, project_root: str | None, others: list[str]) -> dict[str, str]:
    files: list[Path] = [Path(p) for p in others]
    if star:
        from dynamight_core.io.star import read_particles

        particles = read_particles(star, project_root)
        files = [Path(star), *particles.image_files, *files]
    return {str(path): sha256_file(path) for path in dict.fromkeys(files)}


def _seeds(config: dict[str, Any]) -> dict[str, int]:
    seeds: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        elif prefix.endswith("seed."):
            seeds[prefix[:-1]] = node

    walk(config, "")
    return seeds


def run(args: argparse.Namespace) -> None:
    """Collect everything and write the record."""
    config = json.loads(args.config_json)
    records = {Path(p).stem: json.loads(Path(p).read_text()) for p in args.records}
    provenance = {
        "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dynamight_core": __version__,
        "code": _git(args.code_dir),
        "packages": _versions(),
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "config": config,
        "seeds": _seeds(config),
        "inputs_sha256": _input_hashes(args.star, args.project_root, args.inputs),
        "stages": records,
    }
    write_json_atomic(args.out, provenance)
