"""Memory planning: estimates against measured peaks, batch choice, available memory.

The ground truth is a measurement in a fresh process: on the CPU the rise of the peak
resident memory (``VmHWM``, reset through ``/proc/self/clear_refs`` before the measured step,
with glibc's mmap threshold fixed so that freed tensors leave the resident set), on a GPU
``torch.cuda.max_memory_allocated``. Each configuration is built after a baseline, stepped
once (Adam's state, kernels), then measured over a second step.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dynamight_core.errors import InputError, MemoryPlanError
from dynamight_core.memory import choose_batch_size, device_memory_bytes, host_memory_bytes
from dynamight_core.reconstruct.memory import estimate_deformed_backprojection_bytes
from dynamight_core.training.memory import (
    TRAINING_SETTINGS,
    StepShape,
    decoder_saved_bytes,
    estimate_refinement_step_bytes,
    estimate_training_step_bytes,
    estimate_warmup_step_bytes,
    projected_gpu_bytes,
    training_fft_bytes,
)

# estimate / measured: the CPU measurements of these configurations fell within 0.99-1.12 of
# the estimate; the margin covers allocator rounding and torch versions, and is still tight
# enough that a missing (B, N, W) activation per layer (-10%) or a double-counted one fails
LOW, HIGH = 0.85, 1.3

MEASURE_SCRIPT = r"""
import gc, json, re, sys
import numpy as np
import torch
torch.set_num_threads(1)
from dynamight_core.data.batches import ParticleBatch
from dynamight_core.geometry.rotations import euler_to_matrix
from dynamight_core.models.basis_decoder import BasisDecoder
from dynamight_core.models.decoder import DisplacementDecoder
from dynamight_core.models.deformation import DeformationModel
from dynamight_core.models.encoder import ImageEncoder
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.training.half_set_vae import TrainingGrid
from dynamight_core.training.likelihood import FourierLikelihood, max_shell_for
from dynamight_core.training.regularisation import neighbour_graph
from dynamight_core.training.vae import VaeSettings, make_optimizer
from dynamight_core.training.vae_steps import batch_losses

PIXEL_A = 1.5
dev = torch.device(sys.argv[1])


def status(key):
    text = open("/proc/self/status").read()
    return 1024 * int(re.search(key + r":\s+(\d+)", text).group(1))


def baseline():
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated(dev)
    return status("VmRSS")


def reset_peak():
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(dev)
    else:
        open("/proc/self/clear_refs", "w").write("5")


def peak():
    if dev.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(dev)
    return status("VmHWM")


def consensus(box, n):
    # as benchmarks/bench_vae.py::_model
    g = torch.Generator().manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    positions = direction * torch.rand(n, 1, generator=g) ** (1 / 3) * box / 4 * 1.5
    return GaussianModel(positions, torch.rand(n) + 0.5, torch.tensor([2.5, 3.5]), box, PIXEL_A)


def batch_of(box, batch):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(batch, box, box, generator=g)
    euler = torch.rand(batch, 3, generator=g) * torch.tensor([360.0, 180.0, 360.0])
    return ParticleBatch(
        np.arange(batch), torch.fft.rfft2(images).to(dev),
        torch.ones(batch, box, box // 2 + 1, device=dev),
        euler_to_matrix(euler).to(dev), torch.zeros(batch, 2, device=dev),
    )


def vae_step(box, n, batch, resolution, basis=False):
    grid = TrainingGrid.choose(box, PIXEL_A, max_shell_for(box, PIXEL_A, resolution), 64)
    decoder = BasisDecoder(6, box) if basis else DisplacementDecoder(6, box)
    model = DeformationModel(
        consensus(box, n), ImageEncoder(grid.encoder_px, 6, grid.encoder_px / 3), decoder
    ).to(dev)
    zero_started = decoder.coefficients if basis else decoder.output
    torch.nn.init.normal_(zero_started.weight, std=1e-3)
    data = batch_of(box, batch)
    noise = torch.ones(box // 2 + 1, device=dev)
    likelihood = FourierLikelihood(noise, grid.box_px, grid.max_shell)
    graph = neighbour_graph(model.consensus.positions_a())
    optimizer = make_optimizer(model, VaeSettings())

    def step():
        terms = batch_losses(model, data, grid, likelihood, graph, 0.01)
        optimizer.zero_grad(set_to_none=True)
        (terms.data + terms.kl + 0.1 * terms.deformation).backward()
        optimizer.step()

    info = {"grid": grid.box_px, "encoder_px": grid.encoder_px, "edges": len(graph.edges)}
    return step, info


def warmup_step(box, n, batch, resolution):
    model = consensus(box, n).to(dev)
    data = batch_of(box, batch)
    likelihood = FourierLikelihood(torch.ones(box // 2 + 1, device=dev), box, box // 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        predicted = model.projections(data.rotations, data.shifts_a, data.ctf)
        likelihood.per_image(predicted, data.images_ft).mean().backward()
        optimizer.step()

    return step, {}


def measure(kind, box, n, batch, resolution):
    before = baseline()
    if kind == "warmup":
        step, info = warmup_step(box, n, batch, resolution)
    else:
        step, info = vae_step(box, n, batch, resolution, basis=kind == "vae_basis")
    step()
    reset_peak()
    step()
    used = peak() - before
    del step
    return {"kind": kind, "box": box, "n": n, "batch": batch, "bytes": used, **info}


measure("vae", 32, 100, 2, None)  # kernels and allocator warmed up
measure("warmup", 32, 100, 2, None)
for config in json.loads(sys.argv[2]):
    print(json.dumps(measure(*config)), flush=True)
"""

CONFIGURATIONS = [
    ["vae", 64, 1000, 8, 8.0],
    ["vae", 64, 1000, 32, 8.0],
    ["vae", 128, 5000, 32, 8.0],
    ["vae", 128, 1000, 32, None],  # the full box: render and batch tensors matter
    ["warmup", 128, 5000, 16, None],
    ["vae_basis", 64, 1000, 32, 8.0],  # the default decoder: the render dominates
    ["vae_basis", 128, 5000, 32, 8.0],
]


def _measure(device: str, tmp_path: Path) -> list[dict[str, object]]:
    script = tmp_path / "measure_memory.py"
    script.write_text(MEASURE_SCRIPT)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": "65536",  # freed tensors leave the resident set at once
        "MALLOC_TRIM_THRESHOLD_": "0",
    }
    out = subprocess.run(
        [sys.executable, str(script), device, json.dumps(CONFIGURATIONS)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def _estimate(record: dict[str, object]) -> float:
    box, n, batch = int(record["box"]), int(record["n"]), int(record["batch"])  # type: ignore[call-overload]
    if record["kind"] == "warmup":
        return estimate_warmup_step_bytes(batch, box, n).total_bytes
    shape = StepShape(
        batch=batch,
        box_px=box,
        grid_px=int(record["grid"]),  # type: ignore[call-overload]
        batch_box_px=box,
        n_gaussians=n,
        encoder_px=int(record["encoder_px"]),  # type: ignore[call-overload]
        n_edges=int(record["edges"]),  # type: ignore[call-overload]
        decoder_basis=16 if record["kind"] == "vae_basis" else 0,
    )
    return estimate_training_step_bytes(shape).total_bytes


def _can_measure_cpu() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "device",
    [
        pytest.param(
            "cpu",
            marks=pytest.mark.skipif(not _can_measure_cpu(), reason="needs Linux clear_refs"),
        ),
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible"),
        ),
    ],
)
def test_estimates_match_measured_peaks(device: str, tmp_path: Path) -> None:
    records = _measure(device, tmp_path)
    assert len(records) == len(CONFIGURATIONS)
    ratios = []
    for record in records:
        ratio = _estimate(record) / float(record["bytes"])  # type: ignore[arg-type]
        ratios.append((record["kind"], record["box"], record["n"], record["batch"], ratio))
    assert all(LOW <= ratio <= HIGH for *_, ratio in ratios), ratios


def _shape(batch: int = 32, activation_bytes: int = 4) -> StepShape:
    return StepShape(
        batch=batch,
        box_px=320,
        grid_px=128,
        batch_box_px=320,
        n_gaussians=30000,
        activation_bytes=activation_bytes,
    )


def test_batch_dependent_part_scales_with_the_batch() -> None:
    small, large = (
        estimate_training_step_bytes(_shape(16)),
        estimate_training_step_bytes(_shape(32)),
    )
    fixed = small.parameters_bytes
    assert large.parameters_bytes == fixed
    assert (large.total_bytes - fixed) / (small.total_bytes - fixed) == pytest.approx(2.0, rel=0.01)


def test_bfloat16_halves_the_decoder_activations() -> None:
    full, half = _shape(activation_bytes=4), _shape(activation_bytes=2)
    per_gaussian = decoder_saved_bytes(_shape(batch=0))
    ratio = (decoder_saved_bytes(half) - per_gaussian) / (decoder_saved_bytes(full) - per_gaussian)
    assert ratio == pytest.approx(0.5)
    assert (
        estimate_training_step_bytes(half).total_bytes
        < estimate_training_step_bytes(full).total_bytes
    )


def test_the_decoder_dominates_at_user_sizes_and_refinement_is_lighter() -> None:
    """Box 320, 30k Gaussians, batch 32: the activations are gigabytes, the rest is not."""
    estimate = estimate_training_step_bytes(_shape())
    assert estimate.decoder_bytes > 0.5 * estimate.total_bytes
    assert estimate.decoder_bytes == pytest.approx(2 * 9 * 32 * 30000 * 32 * 4, rel=0.02)
    refinement = estimate_refinement_step_bytes(_shape())
    assert refinement.total_bytes < estimate.total_bytes
    assert refinement.encoder_bytes == refinement.penalty_bytes == 0.0
    assert "decoder" in estimate.describe() and "GB" in estimate.describe()


def test_gpu_projection_adds_context_and_slack() -> None:
    estimate = estimate_training_step_bytes(_shape())
    projected = projected_gpu_bytes(estimate, training_fft_bytes(_shape()))
    assert projected > estimate.total_bytes + 0.5 * 1024**3


def test_choose_batch_size_keeps_halves_or_fails(caplog: pytest.LogCaptureFixture) -> None:
    def per_particle(batch: int) -> float:
        return 1e9 + batch * 1e8

    assert choose_batch_size(64, per_particle, capacity_bytes=20e9) == 64
    with caplog.at_level(logging.WARNING, logger="dynamight_core.training.memory"):
        assert choose_batch_size(64, per_particle, capacity_bytes=5e9) == 16
    assert "vae.batch_size 64" in caplog.text and "using batch 16" in caplog.text
    with pytest.raises(MemoryPlanError) as raised:
        choose_batch_size(64, per_particle, capacity_bytes=1e9, settings=TRAINING_SETTINGS)
    message = str(raised.value)
    assert isinstance(raised.value, InputError)
    assert "vae.batch_size" in message and "gaussians.n_gaussians" in message
    assert "1.10 GB needed at batch 1" in message and "0.80 GB" in message


def _fake_files(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path, Path]:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path / "meminfo", tmp_path / "v2", tmp_path / "v1"


MEMINFO = "MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n"


@pytest.mark.parametrize(
    ("files", "environ", "expected"),
    [
        ({"meminfo": MEMINFO}, {}, 8000000 * 1024),
        ({"meminfo": MEMINFO, "v2/memory.max": "max\n"}, {}, 8000000 * 1024),
        (
            {"meminfo": MEMINFO, "v2/memory.max": "4000000000\n", "v2/memory.current": "1000\n"},
            {},
            4000000000 - 1000,
        ),
        (
            {"meminfo": MEMINFO, "v1/memory.limit_in_bytes": "3000000000\n"},
            {},
            3000000000,
        ),
        (
            {"meminfo": MEMINFO, "v1/memory.limit_in_bytes": str(2**63 - 4096)},
            {"SLURM_MEM_PER_NODE": "2000"},
            2000 * 1024**2,
        ),
        (
            {"meminfo": MEMINFO},
            {"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_PER_TASK": "3"},
            3000 * 1024**2,
        ),
    ],
)
def test_host_memory_takes_the_tightest_limit(
    tmp_path: Path, files: dict[str, str], environ: dict[str, str], expected: int
) -> None:
    meminfo, v2, v1 = _fake_files(tmp_path, files)
    # resident=0: the limits alone (tests/faults/test_odd_input.py: the grant less the
    # process's own memory)
    assert host_memory_bytes(meminfo, v2, v1, environ, resident=0) == expected


def test_device_memory_of_this_machine() -> None:
    assert device_memory_bytes(torch.device("cpu")) > 0
    if torch.cuda.is_available():
        assert 0 < device_memory_bytes(torch.device("cuda")) <= torch.cuda.mem_get_info()[1]


def test_deformed_backprojection_grows_with_box_and_batch() -> None:
    small = estimate_deformed_backprojection_bytes(32, 128)
    assert estimate_deformed_backprojection_bytes(32, 256).total_bytes > 7 * small.total_bytes
    # the accumulator's (2, 4D, 4D, 4D) float32 grid is in the fixed part
    assert small.accumulator_bytes > 2 * (4 * 128) ** 3 * 4
    at_256 = [estimate_deformed_backprojection_bytes(b, 256).transient_bytes for b in (64, 128)]
    assert at_256[1] == pytest.approx(2 * at_256[0])
