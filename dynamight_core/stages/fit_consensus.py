"""Stage ``fit-consensus``: a Gaussian pseudo-atom model of a consensus (half) map."""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_section_arguments
from dynamight_core.stages.options import add_checkpoint_argument, add_compute_arguments

logger = logging.getLogger(__name__)

HELP = "place Gaussians in a consensus (half) map and fit their positions, masses and widths"
CHECKPOINT_EVERY = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the consensus fit."""
    add_file_argument(parser, "--map", "map to fit (a consensus half map)")
    add_file_argument(
        parser,
        "--half-maps",
        "the map's half maps, to report its resolution with the fit mask",
        nargs=2,
        default=None,
    )
    add_file_argument(
        parser,
        "--mask",
        "seed and fit inside this mask instead of the thresholded map "
        "[config: inputs.mask, with gaussians.use_input_mask]",
        default=None,
    )
    add_section_arguments(parser, "gaussians", skip=("use_input_mask",))
    add_checkpoint_argument(parser)
    add_file_argument(parser, "--out-model", "the fitted Gaussian model (.pt)")
    add_file_argument(parser, "--out-quality", "fit-quality record (JSON)")
    add_file_argument(parser, "--out-map", "the fitted model rendered as a map (MRC)")
    add_file_argument(parser, "--out-png", "FSC plot of model against map")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Seed, fit, and write the model and its quality record."""
    from dataclasses import asdict

    import numpy as np
    import torch

    from dynamight_core.config_cli import settings_from_args
    from dynamight_core.device import seed_everything
    from dynamight_core.io.files import write_json_atomic
    from dynamight_core.io.mrc import check_same_grid, read_mask, read_volume, write_volume
    from dynamight_core.metrics.fit_quality import fit_quality
    from dynamight_core.metrics.plots import plot_fsc
    from dynamight_core.models.gaussians import save_gaussian_model
    from dynamight_core.models.seeding import SeedSettings, seed_model
    from dynamight_core.stages.common import compute_device, stage_checkpointer
    from dynamight_core.training.fit_map import FitSettings, fit_model_to_map, fit_weight

    volume = read_volume(args.map)
    mask = None
    if args.mask:
        mask = read_mask(args.mask, volume).data
    half_maps = None
    if args.half_maps:
        halves = [read_volume(path) for path in args.half_maps]
        for number, half in enumerate(halves, start=1):
            check_same_grid(half, volume, f"half map {number}")
        half_maps = (halves[0].data, halves[1].data)
    settings = settings_from_args(SeedSettings, args)
    device = compute_device(args)
    seed_everything(args.seed)
    model, threshold = seed_model(volume, mask, settings)
    weight = fit_weight(volume.data, threshold, mask)
    model = model.to(device)
    checkpointer = stage_checkpointer(
        args,
        "fit-consensus",
        {"seeding": asdict(settings), "iterations": args.iterations},
        {"map": args.map, "mask": args.mask},
        CHECKPOINT_EVERY,
    )
    losses = fit_model_to_map(
        model,
        torch.as_tensor(volume.data, device=device),
        torch.as_tensor(weight, device=device),
        FitSettings(iterations=args.iterations),
        checkpointer,
    )
    with torch.no_grad():
        rendered = model.volume().cpu().numpy()
    quality = fit_quality(rendered, volume.data, weight, volume.voxel_size_a, half_maps)
    logger.info(
        "fit: correlation in mask %.4f, FSC 0.5 at %.2f Å%s",
        quality.correlation_in_mask,
        quality.masked_corrected.resolution_at(0.5),
        f", min FSC to the map's resolution {quality.min_fsc_to_map_resolution:.3f}"
        if quality.min_fsc_to_map_resolution is not None
        else "",
    )
    save_gaussian_model(
        args.out_model,
        model,
        {"threshold": threshold, "source": args.map, "settings": asdict(settings)},
    )
    write_volume(args.out_map, rendered, volume.voxel_size_a)
    write_json_atomic(
        args.out_quality,
        {
            **quality.record(),
            "n_gaussians": model.n_gaussians,
            "threshold": threshold,
            "widths_a": [round(w, 4) for w in model.widths_a().tolist()],
            "initial_loss": losses[0],
            "final_loss": losses[-1],
        },
    )
    with np.errstate(divide="ignore"):
        resolution = volume.box_px * volume.voxel_size_a / np.arange(len(quality.unmasked.fsc))
    plot_fsc(
        args.out_png,
        resolution,
        {
            "model vs map (unmasked)": quality.unmasked.fsc,
            "model vs map (masked, corrected)": quality.masked_corrected.fsc,
        },
        "Gaussian model against the map it was fitted to",
        marked=(),  # a model against its map: no half-map resolution
    )
    if checkpointer:
        checkpointer.clear()
