"""Memory plans of the training stages: the batch that fits the device, before any compute.

For the VAE: its step's estimated peak, the batch that fits, and the GPU memory the same
training would need (logged on every device, so a CPU run tells what a GPU would need).
For the warm-up: the batch that fits.
"""

from __future__ import annotations

import logging

import torch

from dynamight_core.memory import choose_batch_size, device_memory_bytes
from dynamight_core.models.decoders import describe_decoder
from dynamight_core.models.gaussians import GaussianModel
from dynamight_core.training.half_set_vae import HalfSetVae
from dynamight_core.training.memory import (
    FLOAT_BYTES,
    TRAINING_SETTINGS,
    WARMUP_SETTINGS,
    MemoryEstimate,
    StepShape,
    estimate_training_step_bytes,
    estimate_warmup_step_bytes,
    projected_gpu_bytes,
    training_fft_bytes,
)

logger = logging.getLogger(__name__)

BFLOAT16_BYTES = 2


def vae_step_shape(vae: HalfSetVae, batch: int, bfloat16: bool) -> StepShape:
    """The sizes of a training step of ``vae`` at ``batch`` (batches on the training grid).

    ``bfloat16``: whether the decoder's hidden layers run in bfloat16.
    """
    model = vae.model
    decoder = describe_decoder(model.decoder, model.consensus.box_px)
    return StepShape(
        batch=batch,
        box_px=model.consensus.box_px,
        grid_px=vae.grid.box_px,
        batch_box_px=vae.grid.box_px,
        n_gaussians=model.consensus.n_gaussians,
        n_channels=int(model.consensus.raw_widths.shape[0]),
        decoder_layers=decoder["n_layers"],
        decoder_width=decoder["width"],
        decoder_basis=decoder.get("n_basis", 0),
        pe_frequencies=decoder["n_frequencies"],
        activation_bytes=BFLOAT16_BYTES if bfloat16 else FLOAT_BYTES,
        encoder_px=vae.grid.encoder_px,
        encoder_hidden=model.encoder.hidden_sizes,
        latent_dim=model.encoder.latent_dim,
    )


def projected_gpu_gb(vae: HalfSetVae, batch: int) -> float:
    """GPU memory (GB) of this training at ``batch`` on a GPU with native bfloat16."""
    shape = vae_step_shape(vae, batch, vae.model.decoder.precision != "float32")
    return projected_gpu_bytes(estimate_training_step_bytes(shape), training_fft_bytes(shape)) / 1e9


def plan_vae_batch(vae: HalfSetVae, requested: int, device: torch.device) -> int:
    """The batch to train with: ``requested`` if its step fits ``device``, else a half of it.

    Logs the estimate and the projected GPU memory; raises
    :class:`~dynamight_core.errors.MemoryPlanError` (naming the settings to change) when
    not even one particle fits.
    """
    bfloat16 = vae.model.decoder.low_precision(device)

    def estimate(batch: int) -> MemoryEstimate:
        return estimate_training_step_bytes(vae_step_shape(vae, batch, bfloat16))

    logger.info(
        "memory plan of a training step at batch %d on %s: %s; on a GPU: %.2f GB",
        requested,
        device,
        estimate(requested).describe(),
        projected_gpu_gb(vae, requested),
    )
    return choose_batch_size(
        requested,
        lambda batch: estimate(batch).total_bytes,
        device_memory_bytes(device),
        step="train-vae step",
        batch_key="vae.batch_size",
        settings=TRAINING_SETTINGS,
    )


def plan_warmup_batch(model: GaussianModel, requested: int, device: torch.device) -> int:
    """The warm-up's batch: ``requested`` if its step fits ``device``, else a half of it."""

    def estimate(batch: int) -> MemoryEstimate:
        channels = int(model.raw_widths.shape[0])
        return estimate_warmup_step_bytes(batch, model.box_px, model.n_gaussians, channels)

    logger.info(
        "memory plan of a warm-up step at batch %d on %s: %s",
        requested,
        device,
        estimate(requested).describe(),
    )
    return choose_batch_size(
        requested,
        lambda batch: estimate(batch).total_bytes,
        device_memory_bytes(device),
        step="warmup step",
        batch_key="warmup.batch_size",
        settings=WARMUP_SETTINGS,
    )
