"""Throughput and memory of the VAE training against the original DynaMight (issues 19, 31).

Six parts, each measurement that needs its own peak memory in its own process (this
script run with ``--worker NAME JSON``), one thread per process unless stated, on CUDA
when visible (``common.device()``):

1. **Epoch target**: one simulated dataset (4,000 particles, box 64, 1.8 Å/px), split into
   halves with 10% validation (``split-halves``), each half's particle store
   (``store-particles``, float32) read by ``BatchReader(crop_px=...)``, a VAE built as the
   ``train-vae`` stage builds it over a consensus of 1,000 Gaussians (simulated atoms, not
   fitted) with a flat noise spectrum. Both halves run in two concurrent processes of one
   thread (as the workflow on 2 cores); each times 3 epochs after one warm-up epoch:
   ``train_epoch`` + ``validation_loss`` (tracking from the previous epoch's latents) +
   ``update_consensus`` / ``consensus_update_every``. Reported: the pair's epoch (the
   slower process's median), particles/s and 19.2 s / ours (target >= 5x, 10x the
   stretch), for the default ``basis`` decoder, the ``mlp`` decoder (the original's
   design and float32 arithmetic) and ``mlp`` in bfloat16.
2. **Per particle at box 128, 5,000 Gaussians**: the same epoch for one half of 2,000
   particles (noise images with simulated metadata), ``basis`` against ``mlp``, and the
   projected per-epoch time of the original at that size (a projection; the original is
   not run here).
3. **Per stage**: particles/s and peak memory of a VAE training step, a latent
   refinement step, a warm-up step and the deformed backprojection at (64, 2,000),
   (128, 5,000) and (256, 20,000), with the memory plan's estimate of the VAE step.
4. **Projection** for 100,000 particles at box 320 with 30,000 Gaussians on this device,
   and scaled to an A100-class GPU by the ratio of dense FP32 matrix-product rates.
5. **Acceptance**: the real ``train-vae`` stage at box 256 with 20,000 Gaussians on half
   sets of 1,000 and 4,000 particles; peak RSS must stay within 20%.
6. **The step split**: a training step per particle in encoder, decoder, render, loss,
   backward and optimizer, at box 64 / 1,000, 128 / 5,000 and 256 / 20,000 Gaussians, for
   ``basis`` and ``mlp`` (target: ``basis`` >= 5x faster at box 128).

Environment: ``BENCH_THROUGHPUT_PARTS`` (default 1,6,2,3,4,5), ``BENCH_THROUGHPUT_SCALE``
(default 1; e.g. 0.1 shrinks every particle count for a quick check), ``BENCH_DEVICE``,
``BENCH_THROUGHPUT_DECODERS`` (part 1's decoder settings, default ``basis,mlp,mlp-bfloat16``).
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_store import write_noise_dataset
from bench_vae import synthetic_batch
from common import device, print_table, seconds_per_call

from dynamight_core.config_schema import default_of
from dynamight_core.data.batches import BatchReader, ParticleBatch
from dynamight_core.models.decoder import bfloat16_is_fast
from dynamight_core.models.deformation import VaeArchitecture, build_deformation_model
from dynamight_core.models.gaussians import GaussianModel, load_gaussian_model, save_gaussian_model
from dynamight_core.training.half_set_vae import HalfSetVae, TrainingGrid
from dynamight_core.training.likelihood import FourierLikelihood, max_shell_for
from dynamight_core.training.memory import estimate_training_step_bytes
from dynamight_core.training.memory_plan import projected_gpu_gb, vae_step_shape
from dynamight_core.training.vae import VaeSettings, make_optimizer

HERE = Path(__file__).resolve().parent
ORIGINAL_EPOCH_S = 19.2  # the original, 4,000 particles, box 64, 1,000 Gaussians, 2 cores
TARGET_SPEEDUP = 5.0
MAX_RSS_RATIO = 1.2
# decoder settings compared: "<vae.decoder>" or "<vae.decoder>-<vae.decoder_precision>"
DEFAULTS = "basis"  # the new decoder (vae.decoder: basis), measured against the reference
REFERENCE = "mlp"  # the original DynaMight's decoder and arithmetic (float32)
OPTION = "mlp-bfloat16"  # vae.decoder_precision: bfloat16 (faster, less accurate on the demo)
SETTINGS = tuple(
    os.environ.get(
        "BENCH_THROUGHPUT_DECODERS", ",".join(dict.fromkeys((DEFAULTS, REFERENCE, OPTION)))
    ).split(",")
)
SCALE = float(os.environ.get("BENCH_THROUGHPUT_SCALE", "1"))
PARTS = [int(p) for p in os.environ.get("BENCH_THROUGHPUT_PARTS", "1,6,2,3,4,5").split(",") if p]
PIXEL_A = 1.5  # parts 3-5


def scaled(count: int) -> int:
    """A particle count times ``BENCH_THROUGHPUT_SCALE`` (at least 20)."""
    return max(20, round(count * SCALE))


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def _worker_command(name: str, arguments: dict[str, Any]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", name, json.dumps(arguments)]


def _env(threads: int = 1) -> dict[str, str]:
    return {**os.environ, "BENCH_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}


def _start(command: list[str], threads: int, log: Any) -> subprocess.Popen[bytes]:
    """Start ``command`` with ``threads`` threads; stdout piped, stderr to the file ``log``."""
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=log, env=_env(threads), cwd=HERE
    )


def _finish(process: subprocess.Popen[bytes], log: Any, what: str) -> tuple[str, str, float]:
    """Stdout, stderr and peak RSS (MB, from ``wait4``) of a started process; fails on error."""
    assert process.stdout is not None
    out = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    log.seek(0)
    err = log.read().decode(errors="replace")
    log.close()
    if process.returncode != 0:
        raise RuntimeError(f"{what} failed ({process.returncode}):\n{err[-3000:]}")
    return out, err, usage.ru_maxrss / 1024.0


def run_workers(jobs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run worker processes concurrently; each one's JSON result with its ``peak_rss_mb``."""
    logs = [tempfile.TemporaryFile() for _ in jobs]  # noqa: SIM115 (closed by _finish)
    processes = [
        _start(_worker_command(name, arguments), 1, log)
        for (name, arguments), log in zip(jobs, logs, strict=True)
    ]
    results = []
    for process, log, (name, _) in zip(processes, logs, jobs, strict=True):
        out, _, peak_mb = _finish(process, log, f"worker {name}")
        results.append({**json.loads(out.strip().splitlines()[-1]), "peak_rss_mb": peak_mb})
    return results


def run_worker(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One worker process's JSON result with its ``peak_rss_mb``."""
    return run_workers([(name, arguments)])[0]


def run_stage(arguments: list[str], threads: int = 1) -> tuple[str, float]:
    """``python -m dynamight_core ARGUMENTS``: its output and log, and its peak RSS (MB)."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by _finish)
    command = [sys.executable, "-m", "dynamight_core", *arguments]
    out, err, peak_mb = _finish(_start(command, threads, log), log, arguments[0])
    return out + err, peak_mb


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _cuda_peak_mb() -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else math.nan


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------


def random_consensus(n: int, box_px: int, pixel_a: float, radius_a: float) -> GaussianModel:
    """``n`` Gaussians uniform in a ball of ``radius_a``, masses ~1, widths 2.5 and 3.5 Å."""
    generator = torch.Generator().manual_seed(n)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator), dim=1)
    positions = direction * torch.rand(n, 1, generator=generator) ** (1 / 3) * radius_a
    masses = torch.rand(n, generator=generator) + 0.5
    return GaussianModel(positions, masses, torch.tensor([2.5, 3.5]), box_px, pixel_a)


def atoms_consensus(folder: Path, n: int, box_px: int, pixel_a: float) -> GaussianModel:
    """``n`` Gaussians at simulated atoms (``truth/atoms.csv``; random ones if fewer)."""
    import pandas as pd

    atoms = pd.read_csv(folder / "truth" / "atoms.csv")
    rng = np.random.default_rng(0)
    picked = rng.choice(len(atoms), n, replace=len(atoms) < n)
    positions = atoms[["x_a", "y_a", "z_a"]].to_numpy()[picked]
    positions = positions + rng.normal(scale=0.5, size=positions.shape)  # no duplicates
    masses = np.full(n, float(atoms["mass"].sum()) / n)
    return GaussianModel(
        torch.tensor(positions, dtype=torch.float32),
        torch.tensor(masses, dtype=torch.float32),
        torch.tensor([2.5, 3.5]),
        box_px,
        pixel_a,
    )


def prepare_halves(folder: Path, star: Path, halves: tuple[int, ...] = (1, 2)) -> None:
    """``split-halves`` (10% validation) and a float32 ``store-particles`` per half."""
    run_stage(["split-halves", "--star", str(star), "--out", str(folder / "halves.csv")])
    for half in halves:
        run_stage(
            [
                "store-particles",
                *("--star", str(star), "--halves", str(folder / "halves.csv")),
                *("--half", str(half), "--out", str(folder / f"store_{half}")),
                *("--precision", "float32", "--threads", "1"),
            ]
        )


# ---------------------------------------------------------------------------------------------
# Workers (each in its own process)
# ---------------------------------------------------------------------------------------------


def worker_epochs(args: dict[str, Any]) -> dict[str, Any]:
    """Time the workflow's epochs of one half set's VAE (part 1 and 2).

    ``args``: folder (star, halves, store_H), model (consensus .pt), half, activation,
    precision, epochs (timed, after one warm-up epoch).
    """
    from dynamight_core.data.halves import read_split
    from dynamight_core.io.particle_store import open_particle_store
    from dynamight_core.io.star import read_particles
    from dynamight_core.training.regularisation import make_graph
    from dynamight_core.training.vae import TrainingState, train_epoch, update_consensus
    from dynamight_core.training.vae_steps import normalise_encoder, validation_loss

    dev = device()
    folder, half = Path(args["folder"]), int(args["half"])
    particles = read_particles(folder / "particles.star")
    train, validation = read_split(folder / "halves.csv", particles, half)
    consensus, _ = load_gaussian_model(args["model"], dev)
    settings = VaeSettings()
    decoder, _, precision = str(args["precision"]).partition("-")
    architecture = VaeArchitecture(decoder=decoder, decoder_precision=precision or "float32")
    grid = TrainingGrid.for_resolution(
        particles.box_px, particles.pixel_size_a, settings.max_resolution_a, architecture.encoder_px
    )
    vae = HalfSetVae(
        build_deformation_model(consensus, architecture, grid.encoder_px).to(dev),
        grid,
        FourierLikelihood(
            torch.ones(grid.box_px // 2 + 1, device=dev), grid.box_px, grid.max_shell
        ),
        settings.refinement(),
        settings.batch_size,
        half,
    )
    rows = np.concatenate([train, validation])
    store = open_particle_store(folder / f"store_{half}", particles, rows)
    reader = BatchReader(particles, store, dev, crop_px=grid.box_px)
    normalise_encoder(vae.model, reader, train, grid)
    optimizer = make_optimizer(vae.model, settings)
    graph = make_graph(vae.model.consensus.positions_a(), None)
    state = TrainingState()
    train_s, validation_s = [], []
    for _ in range(1 + int(args["epochs"])):
        _synchronize()
        start = time.perf_counter()
        train_epoch(vae, optimizer, reader, train, graph, settings, state)
        state.epoch += 1
        _synchronize()
        middle = time.perf_counter()
        _, state.validation_latents = validation_loss(
            vae, reader, validation, state.validation_latents
        )
        _synchronize()
        train_s.append(middle - start)
        validation_s.append(time.perf_counter() - middle)
    start = time.perf_counter()
    update_consensus(vae, reader, train, settings)
    make_graph(vae.model.consensus.positions_a(), None)
    _synchronize()
    consensus_s = time.perf_counter() - start
    timed = [t + v for t, v in zip(train_s[1:], validation_s[1:], strict=True)]
    return {
        "train": len(train),
        "validation": len(validation),
        "grid_px": grid.box_px,
        "train_s": statistics.median(train_s[1:]),
        "validation_s": statistics.median(validation_s[1:]),
        "consensus_s": consensus_s,
        "epoch_s": statistics.median(timed) + consensus_s / settings.consensus_update_every,
        "bfloat16": vae.model.decoder.low_precision(dev),
        "cuda_peak_mb": _cuda_peak_mb(),
    }


def zero_started_layer(decoder: torch.nn.Module) -> torch.nn.Linear:
    """The decoder's layer that starts at zero (set it non-zero to time real displacements)."""
    layer = getattr(decoder, "output", None) or getattr(decoder, "coefficients", None)
    assert isinstance(layer, torch.nn.Linear)
    return layer


def synthetic_vae(
    box_px: int, n_gaussians: int, dev: torch.device, decoder: str = DEFAULTS
) -> HalfSetVae:
    """A default-architecture VAE (``decoder``: a setting of :data:`SETTINGS`) over random
    Gaussians, on the default training grid."""
    settings = VaeSettings()
    kind, _, precision = decoder.partition("-")
    architecture = VaeArchitecture(decoder=kind, decoder_precision=precision or "float32")
    consensus = random_consensus(n_gaussians, box_px, PIXEL_A, box_px * PIXEL_A * 0.375)
    grid = TrainingGrid.for_resolution(
        box_px, PIXEL_A, settings.max_resolution_a, architecture.encoder_px
    )
    model = build_deformation_model(consensus, architecture, grid.encoder_px).to(dev)
    torch.nn.init.normal_(zero_started_layer(model.decoder).weight, std=1e-3)
    likelihood = FourierLikelihood(
        torch.ones(grid.box_px // 2 + 1, device=dev), grid.box_px, grid.max_shell
    )
    return HalfSetVae(model, grid, likelihood, settings.refinement(), settings.batch_size, 1)


def _vae_step(vae: HalfSetVae, batch: ParticleBatch) -> Callable[[], None]:
    from dynamight_core.training.regularisation import neighbour_graph
    from dynamight_core.training.vae_steps import batch_losses

    settings = VaeSettings()
    graph = neighbour_graph(vae.model.consensus.positions_a())
    optimizer = make_optimizer(vae.model, settings)

    def step() -> None:
        terms = batch_losses(vae.model, batch, vae.grid, vae.likelihood, graph, settings.kl_weight)
        optimizer.zero_grad(set_to_none=True)
        (terms.data + terms.kl + 0.1 * terms.deformation).backward()
        optimizer.step()

    return step


def _refine_step(vae: HalfSetVae, batch: ParticleBatch) -> Callable[[], object]:
    from dynamight_core.training.vae_steps import refine_latents

    start = torch.zeros(len(batch.indices), vae.model.encoder.latent_dim, device=batch.ctf.device)
    refinement = vae.refinement
    return lambda: refine_latents(
        vae.model,
        batch,
        vae.grid,
        vae.likelihood,
        start,
        1,
        refinement.lr,
        refinement.prior_weight,
    )


def _forward_pass(vae: HalfSetVae, batch: ParticleBatch) -> Callable[[], None]:
    """Encode and decode without gradients (per-particle work of consensus update, export)."""
    from dynamight_core.training.vae_steps import encode

    @torch.no_grad()
    def forward() -> None:
        mu, _ = encode(vae.model, batch, vae.grid)
        vae.model.displacements_a(mu)

    return forward


def _warmup_step(
    box_px: int, n_gaussians: int, batch_size: int, dev: torch.device
) -> Callable[[], None]:
    from dynamight_core.training.warmup import WarmupSettings, _optimizer

    model = random_consensus(n_gaussians, box_px, PIXEL_A, box_px * PIXEL_A * 0.375).to(dev)
    likelihood = FourierLikelihood(
        torch.ones(box_px // 2 + 1, device=dev), box_px, max_shell_for(box_px, PIXEL_A, None)
    )
    batch = synthetic_batch(box_px, dev, batch_size)
    optimizer = _optimizer(model, WarmupSettings())

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        predicted = model.projections(batch.rotations, batch.shifts_a, batch.ctf)
        likelihood.per_image(predicted, batch.images_ft).mean().backward()
        optimizer.step()

    return step


def _backprojection(box_px: int, n_particles: int, dev: torch.device) -> Callable[[], None]:
    """The deformed backprojection's per-batch body as ``bench_deformed_speed`` times it."""
    from bench_deformed_speed import BATCH, make_particles, our_geometry, random_network

    from dynamight_core.reconstruct.deformed import DeformedSums, _backproject_batch, batch_rows
    from dynamight_core.reconstruct.rigid_kernel import RigidAccumulator

    particles = make_particles(n_particles, box_px, math.inf, seed=box_px, dev=dev)
    generator = torch.Generator().manual_seed(box_px)
    latents = torch.randn(n_particles, 6, generator=generator).to(dev)
    particles.latents = latents
    network = random_network(box_px, 10, 32, 8, seed=0, dev=dev)
    geometry = our_geometry(particles, network)
    support = geometry.projector.support
    sums = DeformedSums.empty(support)
    accumulator = RigidAccumulator(box_px, dev)
    batches = batch_rows(np.arange(n_particles), BATCH)

    def run() -> None:
        for rows in batches:
            _backproject_batch(geometry, 0, rows, sums, accumulator)

    return run


def worker_step(args: dict[str, Any]) -> dict[str, Any]:
    """Seconds per particle of one kind of step (part 3 and 4).

    ``args``: kind (vae, refine, warmup, backprojection), box, gaussians, batch, repeats.
    """
    dev = device()
    kind, box, n, batch = args["kind"], int(args["box"]), int(args["gaussians"]), int(args["batch"])
    repeats = int(args.get("repeats", 3))
    result: dict[str, Any] = {}
    if kind in ("vae", "refine"):
        vae = synthetic_vae(box, n, dev)
        data = synthetic_batch(vae.grid.box_px, dev, batch)
        step = _vae_step(vae, data) if kind == "vae" else _refine_step(vae, data)
        bfloat16 = vae.model.decoder.low_precision(dev)
        estimate = estimate_training_step_bytes(vae_step_shape(vae, batch, bfloat16))
        result.update(
            grid_px=vae.grid.box_px,
            estimate_mb=estimate.total_bytes / 2**20,
            projected_gpu_gb=projected_gpu_gb(vae, batch),
        )
        if kind == "refine":
            forward = _forward_pass(vae, data)
            result["forward_s_per_particle"] = seconds_per_call(forward, repeats, 1) / batch
    elif kind == "warmup":
        step = _warmup_step(box, n, batch, dev)
    else:
        step = _backprojection(box, batch, dev)
    result["s_per_particle"] = seconds_per_call(step, repeats, 1) / batch
    result["cuda_peak_mb"] = _cuda_peak_mb()
    return result


def worker_split(args: dict[str, Any]) -> dict[str, Any]:
    """Milliseconds per particle of each part of a training step (part 6).

    ``args``: box, gaussians, pixel (Å), resolution (Å), decoder (a setting), batch,
    repeats. Parts: encoder (inputs and network), decoder (displacements), render (the
    deformed Gaussians' CTF-modulated projections), loss (likelihood, KL, deformation
    penalty), backward, optimizer (Adam step).
    """
    from dynamight_core.geometry.fourier import crop_fourier_2d
    from dynamight_core.training.regularisation import deformation_penalty, neighbour_graph
    from dynamight_core.training.vae_steps import encode, kl_divergence, predict

    dev = device()
    box, n, batch = int(args["box"]), int(args["gaussians"]), int(args["batch"])
    pixel, resolution = float(args["pixel"]), float(args["resolution"])
    settings = VaeSettings()
    kind, _, precision = str(args["decoder"]).partition("-")
    architecture = VaeArchitecture(decoder=kind, decoder_precision=precision or "float32")
    consensus = random_consensus(n, box, pixel, box * pixel * 0.375)
    grid = TrainingGrid.for_resolution(box, pixel, resolution, architecture.encoder_px)
    model = build_deformation_model(consensus, architecture, grid.encoder_px).to(dev)
    torch.nn.init.normal_(zero_started_layer(model.decoder).weight, std=1e-3)
    likelihood = FourierLikelihood(
        torch.ones(grid.box_px // 2 + 1, device=dev), grid.box_px, grid.max_shell
    )
    data = synthetic_batch(box, dev, batch)
    graph = neighbour_graph(model.consensus.positions_a())
    optimizer = make_optimizer(model, settings)
    times = dict.fromkeys(("encoder", "decoder", "render", "loss", "backward", "optimizer"), 0.0)

    def lap(name: str, start: float) -> float:
        _synchronize()
        now = time.perf_counter()
        times[name] += now - start
        return now

    repeats = int(args.get("repeats", 3))
    for repeat in range(repeats + 1):
        if repeat == 1:
            times = dict.fromkeys(times, 0.0)
        _synchronize()
        start = time.perf_counter()
        mu, log_var = encode(model, data, grid)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        start = lap("encoder", start)
        deformed = model.deformed_positions_a(z)
        start = lap("decoder", start)
        predicted = predict(model, data, grid, deformed)
        start = lap("render", start)
        loss = (
            likelihood.per_image(predicted, crop_fourier_2d(data.images_ft, grid.box_px)).mean()
            + 0.01 * kl_divergence(mu, log_var).mean() / likelihood.n_components
            + deformation_penalty(deformed, graph)
        )
        start = lap("loss", start)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        start = lap("backward", start)
        optimizer.step()
        lap("optimizer", start)
    return {name: 1000 * value / repeats / batch for name, value in times.items()}


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "epochs": worker_epochs,
    "step": worker_step,
    "split": worker_split,
}


# ---------------------------------------------------------------------------------------------
# Parts
# ---------------------------------------------------------------------------------------------


def _settings_name(setting: str) -> str:
    decoder, _, precision = setting.partition("-")
    return f"{decoder}, {precision or 'float32'}"


def part_epoch_target(verdicts: list[str]) -> dict[str, float]:
    """Part 1; returns the float32 seconds per particle (one half, one thread)."""
    from dynamight_core.simulate.dataset import SimulationConfig, simulate_dataset

    n = scaled(4000)
    rows: list[list[object]] = []
    per_particle: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        folder = Path(tmp)
        config = SimulationConfig(n_particles=n, box_px=64, pixel_size_a=1.8, seed=19)
        simulate_dataset(config, folder)
        save_gaussian_model(folder / "model.pt", atoms_consensus(folder, 1000, 64, 1.8), {})
        prepare_halves(folder, folder / "particles.star")
        for settings in SETTINGS:
            jobs = [
                (
                    "epochs",
                    {
                        "folder": str(folder),
                        "model": str(folder / "model.pt"),
                        "half": half,
                        "precision": settings,
                        "epochs": 3,
                    },
                )
                for half in (1, 2)
            ]
            halves = run_workers(jobs)
            slower = max(halves, key=lambda r: r["epoch_s"])
            epoch_s = slower["epoch_s"]
            # the original's 19.2 s is for 4,000 particles: scale ours to that count
            epoch_4000_s = epoch_s * 4000 / n
            speedup = ORIGINAL_EPOCH_S / epoch_4000_s
            per_particle[_settings_name(settings)] = epoch_s / (
                slower["train"] + slower["validation"]
            )
            rows.append(
                [
                    _settings_name(settings),
                    "yes" if slower["bfloat16"] else "no",
                    slower["train_s"],
                    slower["validation_s"],
                    slower["consensus_s"],
                    epoch_s,
                    n / epoch_s,
                    speedup,
                    max(r["peak_rss_mb"] for r in halves),
                ]
            )
            if settings in (DEFAULTS, REFERENCE):
                verdict = "PASS" if speedup >= TARGET_SPEEDUP else "FAIL"
                verdicts.append(
                    f"{verdict if settings == DEFAULTS else 'info'}: epoch of both halves, "
                    f"4,000 particles at box 64 / 1,000 Gaussians, decoder "
                    f"{_settings_name(settings)}: {epoch_4000_s:.2f} s, {speedup:.1f}x the "
                    f"original's 19.2 s (target >= {TARGET_SPEEDUP:g}x, "
                    f"<= {ORIGINAL_EPOCH_S / TARGET_SPEEDUP:.2f} s; 10x: "
                    f"{ORIGINAL_EPOCH_S / 10:.2f} s)"
                )
    print_table(
        f"1. epoch of both halves in parallel ({n} particles, box 64, 1.8 Å/px, 1,000 "
        f"Gaussians, 10% validation, 1 thread per half, {device()}): the slower half's median "
        "of 3 epochs after one; consensus update / 5",
        [
            "decoder",
            "bf16",
            "train s",
            "valid s",
            "consensus s",
            "epoch s",
            "particles/s",
            "19.2 s / ours",
            "peak RSS MB",
        ],
        rows,
    )
    if not bfloat16_is_fast(device()):
        print(f"note: {device()} has no native bfloat16: 'bfloat16' runs the decoder in float32")
    return per_particle


def part_box128(per_particle_64: dict[str, float], verdicts: list[str]) -> None:
    """Part 2: one half's epoch at box 128 / 5,000 Gaussians, both decoder settings."""
    n = scaled(2000)
    rows: list[list[object]] = []
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        folder = Path(tmp)
        star = write_noise_dataset(folder, n, 128, PIXEL_A)
        consensus = random_consensus(5000, 128, PIXEL_A, 128 * PIXEL_A * 0.375)
        save_gaussian_model(folder / "model.pt", consensus, {})
        prepare_halves(folder, star, halves=(1,))
        for settings in (DEFAULTS, REFERENCE):
            arguments = {
                "folder": str(folder),
                "model": str(folder / "model.pt"),
                "half": 1,
                "precision": settings,
                "epochs": 1,
            }
            measured = run_worker("epochs", arguments)
            seconds = measured["epoch_s"] / (measured["train"] + measured["validation"])
            result[settings] = seconds
            rows.append(
                [
                    _settings_name(settings),
                    1000 * seconds,
                    measured["epoch_s"],
                    measured["peak_rss_mb"],
                ]
            )
    ratio = result[REFERENCE] / result[DEFAULTS]
    print_table(
        f"2. one half's epoch at box 128, 5,000 Gaussians ({n // 2} particles of {n}, 1 thread, "
        f"{device()}): epoch after one",
        ["decoder", "ms/particle", "epoch s", "peak RSS MB"],
        rows,
    )
    if DEFAULTS != REFERENCE:
        verdicts.append(
            f"info: box 128 / 5,000 Gaussians, an epoch (training, validation, consensus "
            "update) per particle: "
            f"{_settings_name(DEFAULTS)} {1000 * result[DEFAULTS]:.2f} ms, "
            f"{_settings_name(REFERENCE)} {1000 * result[REFERENCE]:.2f} ms: {ratio:.1f}x"
        )
    original_64 = per_particle_64.get(_settings_name(REFERENCE))
    if original_64:
        # the original's decoder is our mlp in float32: assume its cost grows as ours does
        projected_s = ORIGINAL_EPOCH_S * result[REFERENCE] / original_64
        ours_s = result[DEFAULTS] * 4000 / 2  # two halves in parallel
        print(
            f"PROJECTION (the original is not run here): the original's epoch of 4,000 "
            f"particles at box 128 / 5,000 Gaussians ~ 19.2 s x {1000 * result[REFERENCE]:.2f} / "
            f"{1000 * original_64:.2f} ms/particle = {projected_s:.0f} s; ours (2 halves in "
            f"parallel) {ours_s:.1f} s: {projected_s / ours_s:.1f}x"
        )
        verdicts.append(
            f"info: box 128 / 5,000 Gaussians: {projected_s / ours_s:.1f}x the projected original"
        )


STAGE_SIZES = ((64, 2000, 64), (128, 5000, 64), (256, 20000, 16))
BACKPROJECTION_PARTICLES = {64: 32, 128: 32, 256: 4, 320: 2}


def part_stages() -> dict[int, float]:
    """Part 3; returns the deformed backprojection's seconds per particle by box."""
    rows: list[list[object]] = []
    backprojection: dict[int, float] = {}
    cpu = device().type == "cpu"
    for box, n, cpu_batch in STAGE_SIZES:
        batch = cpu_batch if cpu else 64
        for kind in ("vae", "refine", "warmup", "backprojection"):
            step_batch = (
                BACKPROJECTION_PARTICLES[box] if kind == "backprojection" and cpu else batch
            )
            repeats = 1 if box >= 256 else 3
            measured = run_worker(
                "step",
                {"kind": kind, "box": box, "gaussians": n, "batch": step_batch, "repeats": repeats},
            )
            if kind == "backprojection":
                backprojection[box] = measured["s_per_particle"]
            estimate = f"{measured['estimate_mb']:.0f}" if kind == "vae" else ""
            gpu = f"{measured['projected_gpu_gb']:.2f}" if kind == "vae" else ""
            rows.append(
                [
                    box,
                    n,
                    kind,
                    step_batch,
                    1 / measured["s_per_particle"],
                    1000 * measured["s_per_particle"],
                    measured["peak_rss_mb"],
                    measured["cuda_peak_mb"],
                    estimate,
                    gpu,
                ]
            )
    print_table(
        f"3. per stage, 1 thread, {device()} (VAE/refinement at {VaeSettings().max_resolution_a} Å "
        f"and {PIXEL_A} Å/px; warm-up full box, Nyquist; backprojection: forward-field body, "
        "no fold of the rigid sums); estimate: training/memory.py of the VAE step (tensors only)",
        [
            "box",
            "gaussians",
            "step",
            "batch",
            "particles/s",
            "ms/particle",
            "peak RSS MB",
            "CUDA peak MB",
            "estimate MB",
            "GPU proj. GB",
        ],
        rows,
    )
    if cpu:
        print(
            f"on CPU: batch {STAGE_SIZES[-1][2]} at box 256 (64 elsewhere); backprojection of "
            f"{BACKPROJECTION_PARTICLES} particles by box"
        )
    return backprojection


A100_FP32_FLOPS = 19.5e12  # NVIDIA A100 dense FP32 (no TF32), the paper's class of GPU
TYPICAL_EPOCHS = 25  # where the stopping rule ended on the benchmarks (16-25)


def dense_flops_per_s() -> float:
    """This device's dense FP32 matrix-product rate (FLOP/s), on the threads in use."""
    dev = device()
    a = torch.randn(1024, 1024, device=dev)
    seconds = seconds_per_call(lambda: a @ a, 5, 1)
    return 2 * 1024**3 / seconds


def a100_rows(epoch_s: float, export_s: float, backprojection_s: float, total: int) -> list:
    """The part-4 times scaled to an A100-class GPU at this device's efficiency.

    A PROJECTION, not a measurement: each time is divided by (A100 dense FP32 rate / this
    device's dense FP32 rate, both matrix products), i.e. the code is assumed to reach the
    same fraction of the GPU's arithmetic as of this CPU's. Scatter-heavy rendering usually
    reaches less on a GPU, FFTs more; read it as the order of magnitude.
    """
    rate = dense_flops_per_s()
    factor = A100_FP32_FLOPS / rate
    training_h = 2 * TYPICAL_EPOCHS * epoch_s / factor / 3600
    export_h = 2 * export_s / factor / 3600
    backprojection_h = total * backprojection_s / factor / 3600  # nan: part 3 not run
    note = f"this {device()}: {rate / 1e9:.0f} GFLOP/s dense; A100 19.5 TFLOP/s: /{factor:.0f}"
    measured = training_h + export_h + (backprojection_h if math.isfinite(backprojection_h) else 0)
    return [
        ["A100-class: VAE training, 25 epochs, both halves", f"{training_h:.2f} h", note],
        ["A100-class: latent export, both halves", f"{export_h:.2f} h", "same scaling"],
        ["A100-class: deformed backprojection", f"{backprojection_h:.2f} h", "same scaling"],
        [
            "A100-class: total of these",
            f"{measured:.1f} h",
            "the paper's original: 17-27 h for such data"
            + ("" if math.isfinite(backprojection_h) else " (backprojection not measured)"),
        ],
    ]


def part_projection(backprojection: dict[int, float]) -> None:
    """Part 4: projected wall time of 100,000 particles at box 320, 30,000 Gaussians."""
    settings = VaeSettings()
    cpu = device().type == "cpu"
    batch = 4 if cpu else 64
    train = run_worker(
        "step", {"kind": "vae", "box": 320, "gaussians": 30000, "batch": batch, "repeats": 1}
    )
    refine = run_worker(
        "step", {"kind": "refine", "box": 320, "gaussians": 30000, "batch": batch, "repeats": 1}
    )
    total = 100_000
    half = total // 2
    train_s, refine_s = train["s_per_particle"], refine["s_per_particle"]
    forward_s = refine["forward_s_per_particle"]
    n_train, n_valid = 0.9 * half, 0.1 * half
    epoch_s = (
        n_train * train_s
        + n_valid * (settings.track_steps * refine_s + forward_s)
        + n_train * forward_s / settings.consensus_update_every
    )
    max_epochs = default_of("vae", "max_epochs")
    export_s = half * (settings.refine_steps * refine_s + forward_s)
    if 320 in backprojection:
        backprojection_s, how = backprojection[320], "measured at 320"
    elif 256 in backprojection:
        backprojection_s = backprojection[256] * (320 / 256) ** 3
        how = "box 256 x (320/256)^3"
    else:
        backprojection_s, how = math.nan, "not measured"
    rows: list[list[object]] = [
        ["training step, per particle", f"{1000 * train_s:.1f} ms", f"batch {batch}"],
        ["refinement step, per particle", f"{1000 * refine_s:.1f} ms", f"batch {batch}"],
        ["encode + decode (no grad), per particle", f"{1000 * forward_s:.1f} ms", ""],
        [
            "one epoch of one half (50,000)",
            f"{epoch_s / 60:.1f} min",
            f"90% train + 10% x {settings.track_steps} tracking steps + consensus / "
            f"{settings.consensus_update_every}",
        ],
        [
            "VAE training, 50 epochs, both halves",
            f"{2 * 50 * epoch_s / 3600:.1f} h",
            "sequential on one device (in parallel on two: half)",
        ],
        [
            f"VAE training, max_epochs {max_epochs}, both halves",
            f"{2 * max_epochs * epoch_s / 3600:.1f} h",
            "sequential on one device",
        ],
        [
            "latent export, both halves",
            f"{2 * export_s / 60:.1f} min",
            f"{settings.refine_steps} refinement steps per particle",
        ],
        ["deformed backprojection, 100,000", f"{total * backprojection_s / 3600:.1f} h", how],
        [
            "GPU memory of the training",
            f"{train['projected_gpu_gb']:.1f} GB",
            f"projected_gpu_gb at batch {batch}",
        ],
    ]
    rows += a100_rows(epoch_s, export_s, backprojection_s, total)
    if batch != settings.batch_size:
        gpu_64 = run_worker_projection(320, 30000, settings.batch_size)
        rows.append(
            [
                "GPU memory at the default batch",
                f"{gpu_64:.1f} GB",
                f"projected_gpu_gb at batch {settings.batch_size}",
            ]
        )
    print_table(
        f"4. PROJECTION: 100,000 particles at box 320, 30,000 Gaussians on {device()} (1 thread)",
        ["what", "time", "how"],
        rows,
    )


def run_worker_projection(box_px: int, n_gaussians: int, batch: int) -> float:
    """``projected_gpu_gb`` of the default VAE at ``box_px`` (computed here, no step run)."""
    vae = synthetic_vae(box_px, n_gaussians, torch.device("cpu"))
    return projected_gpu_gb(vae, batch)


SPLIT_SIZES = ((64, 1000, 1.8, 64), (128, 5000, 1.5, 64), (256, 20000, 1.5, 16))


def part_split(verdicts: list[str]) -> None:
    """Part 6: where a training step's time goes, per particle, for each decoder."""
    rows: list[list[object]] = []
    totals: dict[tuple[int, str], float] = {}
    resolution = VaeSettings().max_resolution_a or 8.0
    for box, n, pixel, batch in SPLIT_SIZES:
        for setting in (DEFAULTS, REFERENCE):
            measured = run_worker(
                "split",
                {
                    "box": box,
                    "gaussians": n,
                    "pixel": pixel,
                    "resolution": resolution,
                    "decoder": setting,
                    "batch": batch if device().type == "cpu" else 64,
                    "repeats": 1 if box >= 256 else 3,
                },
            )
            parts = [measured[name] for name in ("encoder", "decoder", "render", "loss")]
            parts += [measured["backward"], measured["optimizer"]]
            rows.append([box, n, _settings_name(setting), *parts, sum(parts)])
            totals[box, setting] = sum(parts)
    print_table(
        f"6. a training step per particle, ms, 1 thread, {device()} (training grid to "
        f"{resolution} Å; synthetic batch; reading: part 1's read column)",
        [
            *("box", "gaussians", "decoder", "encoder", "decoder", "render", "loss"),
            *("backward", "optimizer", "total"),
        ],
        rows,
    )
    if DEFAULTS != REFERENCE:
        ratio = totals[128, REFERENCE] / totals[128, DEFAULTS]
        verdicts.append(
            f"{'PASS' if ratio >= 5 else 'FAIL'}: box 128 / 5,000 Gaussians, a training step "
            f"per particle: {_settings_name(DEFAULTS)} {totals[128, DEFAULTS]:.2f} ms, "
            f"{_settings_name(REFERENCE)} {totals[128, REFERENCE]:.2f} ms: {ratio:.1f}x "
            "(target >= 5x)"
        )


def part_acceptance(verdicts: list[str]) -> None:
    """Part 5: the train-vae stage at box 256, 20,000 Gaussians, 1,000 vs 4,000 particles."""
    rows: list[list[object]] = []
    peaks: list[float] = []
    for n in (scaled(2000), scaled(8000)):
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            folder = Path(tmp)
            start = time.perf_counter()
            star = write_noise_dataset(folder, n, 256, PIXEL_A)
            model = random_consensus(20000, 256, PIXEL_A, 256 * PIXEL_A * 0.375)
            save_gaussian_model(folder / "warm.pt", model, {"noise_power": [1.0] * 129})
            prepare_halves(folder, star, halves=(1,))
            prepared_s = time.perf_counter() - start
            out = folder / "out"
            out.mkdir()
            start = time.perf_counter()
            log, peak_mb = run_stage(
                [
                    "train-vae",
                    *("--star", str(star), "--halves", str(folder / "halves.csv"), "--half", "1"),
                    *("--model", str(folder / "warm.pt"), "--store", str(folder / "store_1")),
                    *("--max-epochs", "1", "--refine-steps", "1", "--track-steps", "1"),
                    *("--threads", "2", "--out-model", str(out / "model.pt")),
                    *("--out-latents", str(out / "latents.csv")),
                    *("--out-history", str(out / "training.tsv")),
                    *("--out-png", str(out / "training.png")),
                ],
                threads=2,
            )
            stage_s = time.perf_counter() - start
            plan = re.search(r"memory plan.*", log)
            peaks.append(peak_mb)
            rows.append([n, n // 2, prepared_s, stage_s, peak_mb])
            print(f"  {n} particles: {plan.group(0) if plan else 'no memory plan line'}")
    ratio = peaks[1] / peaks[0]
    print_table(
        "5. train-vae stage, box 256, 1.5 Å/px, 20,000 Gaussians, half set 1 from the float32 "
        "store (noise images with simulated metadata), 1 epoch, 1 refinement / tracking "
        "step, 2 threads",
        ["particles", "half set", "prepare s", "stage s", "peak RSS MB"],
        rows,
    )
    verdict = "PASS" if ratio <= MAX_RSS_RATIO else "FAIL"
    verdicts.append(
        f"{verdict}: train-vae peak RSS at box 256 / 20,000 Gaussians, {rows[1][1]} vs "
        f"{rows[0][1]} particles: {ratio:.2f}x (target <= {MAX_RSS_RATIO:g}x)"
    )


def main() -> None:
    torch.set_num_threads(1)
    verdicts: list[str] = []
    per_particle_64: dict[str, float] = {}
    backprojection: dict[int, float] = {}
    parts: dict[int, Callable[[], None]] = {
        1: lambda: per_particle_64.update(part_epoch_target(verdicts)),
        2: lambda: part_box128(per_particle_64, verdicts),
        3: lambda: backprojection.update(part_stages()),
        4: lambda: part_projection(backprojection),
        5: lambda: part_acceptance(verdicts),
        6: lambda: part_split(verdicts),
    }
    durations = []
    for number in PARTS:
        start = time.perf_counter()
        parts[number]()
        durations.append(f"part {number}: {time.perf_counter() - start:.0f} s")
        print(f"-- part {number} took {time.perf_counter() - start:.0f} s", flush=True)
    print("\n== summary (" + ", ".join(durations) + ")")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
        print(json.dumps(WORKERS[sys.argv[2]](json.loads(sys.argv[3]))))
    else:
        main()
