"""Stage ``fit-consensus``: a Gaussian pseudo-atom model of a consensus (half) map."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch

from dynamight_core.device import seed_everything
from dynamight_core.io.checkpoint import Checkpointer
from dynamight_core.io.files import sha256_file, write_json_atomic
from dynamight_core.io.mrc import check_volume_matches, read_volume, write_volume
from dynamight_core.metrics.fit_quality import fit_quality
from dynamight_core.metrics.plots import plot_fsc
from dynamight_core.models.gaussians import save_gaussian_model
from dynamight_core.models.seeding import SeedSettings, seed_model
from dynamight_core.stages.common import add_compute_arguments, compute_device
from dynamight_core.training.fit_map import FitSettings, fit_model_to_map, fit_weight

logger = logging.getLogger(__name__)

HELP = "place Gaussians in a consensus (half) map and fit their positions, masses and widths"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the consensus fit."""
    parser.add_argument("--map", required=True, help="map to fit (a consensus half map)")
    parser.add_argument(
        "--half-maps",
        nargs=2,
        default=None,
        help="the map's half maps, to report its resolution with the fit mask",
    )
    parser.add_argument(
        "--mask", default=None, help="seed and fit inside this mask (default: the thresholded map)"
    )
    parser.add_argument("--n-gaussians", type=int, default=None)
    parser.add_argument("--gaussians-per-residue", type=float, default=2.0)
    parser.add_argument(
        "--n-residues",
        type=int,
        default=None,
        help="sequence length (default: estimated from the map volume)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="density threshold (default: from the map's noise level)",
    )
    parser.add_argument("--n-width-classes", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=FitSettings.iterations)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        help="folder for the internal checkpoint (every 100 steps)",
    )
    parser.add_argument("--out-model", required=True)
    parser.add_argument("--out-quality", required=True, help="fit-quality record (JSON)")
    parser.add_argument("--out-map", required=True, help="the fitted model rendered as a map")
    parser.add_argument("--out-png", required=True, help="FSC plot of model against map")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Seed, fit, and write the model and its quality record."""
    volume = read_volume(args.map)
    mask = None
    if args.mask:
        mask_volume = read_volume(args.mask)
        check_volume_matches(mask_volume, volume.box_px, volume.voxel_size_a, "mask")
        mask = mask_volume.data
    half_maps = None
    if args.half_maps:
        halves = [read_volume(path) for path in args.half_maps]
        for number, half in enumerate(halves, start=1):
            check_volume_matches(half, volume.box_px, volume.voxel_size_a, f"half map {number}")
        half_maps = (halves[0].data, halves[1].data)
    settings = SeedSettings(
        n_gaussians=args.n_gaussians,
        gaussians_per_residue=args.gaussians_per_residue,
        n_residues=args.n_residues,
        threshold=args.threshold,
        n_width_classes=args.n_width_classes,
        seed=args.seed,
    )
    device = compute_device(args)
    seed_everything(args.seed)
    model, threshold = seed_model(volume, mask, settings)
    weight = fit_weight(volume.data, threshold, mask)
    model = model.to(device)
    checkpointer = None
    if args.checkpoint_dir:
        checkpointer = Checkpointer(
            args.checkpoint_dir,
            "fit-consensus",
            {
                "map_sha256": sha256_file(args.map),
                "seeding": vars(settings),
                "iterations": args.iterations,
                "mask_sha256": sha256_file(args.mask) if args.mask else None,
            },
            every=100,
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
    quality.update(
        n_gaussians=model.n_gaussians,
        threshold=threshold,
        widths_a=[round(w, 4) for w in model.widths_a().tolist()],
        initial_loss=losses[0],
        final_loss=losses[-1],
    )
    logger.info(
        "fit: correlation in mask %.4f, FSC 0.5 at %.2f Å%s",
        quality["correlation_in_mask"],
        quality["masked_corrected"]["resolution_05_a"],  # type: ignore[index]
        f", min FSC to the map's resolution {quality['min_fsc_to_map_resolution']:.3f}"
        if half_maps
        else "",
    )
    save_gaussian_model(
        args.out_model,
        model,
        {"threshold": threshold, "source": args.map, "settings": vars(settings)},
    )
    write_volume(args.out_map, rendered, volume.voxel_size_a)
    write_json_atomic(args.out_quality, quality)
    shells = np.arange(len(quality["unmasked"]["fsc"]))  # type: ignore[index]
    with np.errstate(divide="ignore"):
        resolution = volume.box_px * volume.voxel_size_a / shells
    plot_fsc(
        args.out_png,
        resolution,
        {
            "model vs map (unmasked)": np.array(quality["unmasked"]["fsc"]),  # type: ignore[index]
            "model vs map (masked, corrected)": np.array(quality["masked_corrected"]["fsc"]),  # type: ignore[index]
        },
        "Gaussian model against the map it was fitted to",
    )
    if checkpointer:
        checkpointer.clear()
