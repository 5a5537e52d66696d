"""Deformation VAE: training particles/s, where the time goes, and memory vs dataset size.

* particles/s of training steps (encoder, decoder, render, loss, backward, Adam) at box 64
  with 2,000 Gaussians and box 128 with 5,000 Gaussians, on BENCH_THREADS threads;
* the profile of one step (top operators);
* peak RSS of one training epoch over a simulated set of 4,000 and of 16,000 particles, each
  in its own process (memory must not grow with the number of particles: images stream
  from the memory-mapped stack).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import configure, device, peak_rss_mb, print_table, seconds_per_call

from dynamight_core.config_schema import default_of
from dynamight_core.data.batches import ParticleBatch
from dynamight_core.geometry.rotations import euler_to_matrix
from dynamight_core.models.decoder import DisplacementDecoder
from dynamight_core.models.deformation import DeformationModel
from dynamight_core.models.encoder import ImageEncoder
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.training.half_set_vae import TrainingGrid
from dynamight_core.training.likelihood import FourierLikelihood, max_shell_for
from dynamight_core.training.regularisation import neighbour_graph
from dynamight_core.training.vae import VaeSettings, make_optimizer
from dynamight_core.training.vae_steps import batch_losses

BATCH = 64
PIXEL_A = 1.5
DEFAULT_RESOLUTION_A = default_of("vae", "max_resolution_a")  # the workflow's default


def _model(
    box: int, n: int, dev: torch.device, max_resolution_a: float | None = DEFAULT_RESOLUTION_A
) -> tuple[DeformationModel, TrainingGrid]:
    g = torch.Generator().manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    positions = direction * torch.rand(n, 1, generator=g) ** (1 / 3) * box / 4 * 1.5
    consensus = GaussianModel(
        positions, torch.rand(n) + 0.5, torch.tensor([2.5, 3.5]), box, PIXEL_A
    )
    grid = TrainingGrid.choose(box, PIXEL_A, max_shell_for(box, PIXEL_A, max_resolution_a), 64)
    model = DeformationModel(
        consensus,
        ImageEncoder(grid.encoder_px, 6, grid.encoder_px / 3),
        DisplacementDecoder(6, box),
    ).to(dev)
    torch.nn.init.normal_(model.decoder.output.weight, std=1e-3)
    return model, grid


def synthetic_batch(box: int, dev: torch.device, size: int = BATCH) -> ParticleBatch:
    """Noise images (`(B, box, box//2+1)` transforms), CTF 1, random poses, no shifts."""
    g = torch.Generator().manual_seed(1)
    images = torch.randn(size, box, box, generator=g)
    euler = torch.rand(size, 3, generator=g) * torch.tensor([360.0, 180.0, 360.0])
    return ParticleBatch(
        np.arange(size),
        torch.fft.rfft2(images).to(dev),
        torch.ones(size, box, box // 2 + 1, device=dev),
        euler_to_matrix(euler).to(dev),
        torch.zeros(size, 2, device=dev),
    )


def step_rate(
    box: int, n: int, dev: torch.device, max_resolution_a: float | None, profile: bool = False
) -> tuple[float, str]:
    model, grid = _model(box, n, dev, max_resolution_a)
    batch = synthetic_batch(box, dev)
    likelihood = FourierLikelihood(
        torch.ones(box // 2 + 1, device=dev), grid.box_px, grid.max_shell
    )
    graph = neighbour_graph(model.consensus.positions_a())
    optimizer = make_optimizer(model, VaeSettings())

    def step() -> None:
        terms = batch_losses(model, batch, grid, likelihood, graph, 0.01)
        optimizer.zero_grad()
        (terms.data + terms.kl + 0.1 * terms.deformation).backward()
        optimizer.step()

    rate = BATCH / seconds_per_call(step)
    table = ""
    if profile:
        with torch.profiler.profile() as prof:
            step()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8)
    return rate, table


SIMULATE_SCRIPT = """
import sys
from pathlib import Path
from dynamight_core.simulate.dataset import SimulationConfig, simulate_dataset
config = SimulationConfig(n_particles=int(sys.argv[2]), pixel_size_a=2.0, snr=0.1, seed=2)
simulate_dataset(config, Path(sys.argv[1]))
"""

EPOCH_SCRIPT = """
import json, sys, resource, numpy as np, torch
from pathlib import Path
from dynamight_core.io.star import read_particles
from dynamight_core.io.stacks import ImageSource
from dynamight_core.data.batches import BatchReader
sys.path.insert(0, sys.argv[2])
from bench_vae import _model
from dynamight_core.training.likelihood import FourierLikelihood
from dynamight_core.training.regularisation import neighbour_graph
from dynamight_core.training.half_set_vae import HalfSetVae
from dynamight_core.training.vae import TrainingState, VaeSettings, train_epoch, make_optimizer
torch.set_num_threads(1)
particles = read_particles(Path(sys.argv[1]) / "particles.star")
model, grid = _model(64, 500, torch.device("cpu"))
reader = BatchReader(particles, ImageSource(particles), torch.device("cpu"))
likelihood = FourierLikelihood(torch.ones(33), grid.box_px, grid.max_shell)
settings = VaeSettings()
vae = HalfSetVae(model, grid, likelihood, settings.refinement(), settings.batch_size, 1)
train_epoch(vae, make_optimizer(model, settings), reader, np.arange(len(particles)),
            neighbour_graph(model.consensus.positions_a()), settings, TrainingState())
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def epoch_memory(n_particles: int) -> float:
    """Peak RSS (MB) of a process training one epoch on ``n_particles`` simulated particles.

    The dataset is simulated by another process, so only training is measured.
    """
    here = str(Path(__file__).parent)
    with tempfile.TemporaryDirectory() as tmp:
        for script, argument in ((SIMULATE_SCRIPT, str(n_particles)), (EPOCH_SCRIPT, here)):
            out = subprocess.run(
                [sys.executable, "-c", script, tmp, argument],
                capture_output=True,
                text=True,
                check=True,
            )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"])


def decoder_rates(box: int, n: int, dev: torch.device) -> tuple[float, float, float]:
    """Decoder forward + backward particles/s: factored first layer vs concatenated input.

    The concatenated form is the direct one (each Gaussian's positional encoding joined
    with z for every particle, as the original DynaMight); both use the same weights.
    Returns both rates and the largest difference of their outputs.
    """
    torch.manual_seed(0)
    decoder = DisplacementDecoder(6, box).to(dev)
    torch.nn.init.normal_(decoder.output.weight, std=1e-2)
    positions = torch.rand(n, 3, device=dev) - 0.5
    z = torch.randn(BATCH, 6, device=dev)

    def concatenated() -> torch.Tensor:
        encoding = decoder.encode_positions(positions)
        joint = torch.cat(
            [encoding[None].expand(BATCH, -1, -1), z[:, None].expand(-1, n, -1)], dim=-1
        )
        weight = torch.cat([decoder.position_layer.weight, decoder.latent_layer.weight], dim=1)
        hidden = decoder.activation(
            torch.nn.functional.linear(joint, weight, decoder.latent_layer.bias)
        )
        for layer in decoder.hidden:
            hidden = decoder.activation(layer(hidden))
        return decoder.output(hidden)

    def rate(function: Callable[[], torch.Tensor]) -> float:
        return BATCH / seconds_per_call(lambda: function().square().sum().backward(), 3)

    with torch.no_grad():
        difference = float((decoder(z, positions) - concatenated()).abs().max())
    return rate(lambda: decoder(z, positions)), rate(concatenated), difference


def main() -> None:
    threads = configure()
    dev = device()
    rows = []
    profile = ""
    for box, n, resolution_a in ((64, 2000, 8.0), (128, 5000, 8.0), (128, 5000, None)):
        profiled = box == 128 and resolution_a is not None
        rate, table = step_rate(box, n, dev, resolution_a, profile=profiled)
        profile = table or profile
        grid = _model(box, 10, dev, resolution_a)[1].box_px
        limit = "Nyquist" if resolution_a is None else f"{resolution_a:g} Å"
        rows.append([box, n, f"{limit} ({grid} px)", rate, f"{1000 / rate:.1f} ms/particle"])
    print_table(
        f"VAE training steps (batch {BATCH}), {threads} thread(s), {dev}",
        ["box", "gaussians", "trained to (grid)", "particles/s", "time"],
        rows,
    )
    print("\nprofile of one step at box 128, 5,000 Gaussians, 8 Å:\n" + profile)
    decoder_rows = []
    for box, n in ((64, 2000), (128, 5000)):
        factored, concatenated, difference = decoder_rates(box, n, dev)
        decoder_rows.append([n, factored, concatenated, factored / concatenated, difference])
    print_table(
        f"decoder forward + backward (batch {BATCH}): factored first layer vs concatenated input",
        ["gaussians", "factored p/s", "concatenated p/s", "ratio", "max |difference|"],
        decoder_rows,
    )
    small, large = epoch_memory(4000), epoch_memory(16000)
    print_table(
        "peak RSS of one training epoch (box 64, 500 Gaussians, 1 thread)",
        ["particles", "peak RSS (MB)", "ratio to 4,000"],
        [[4000, small, 1.0], [16000, large, large / small]],
    )
    print(f"peak RSS of this benchmark: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
