"""Stage ``state-maps``: one half set's improved maps of chosen states along the motion.

A state is a percentile of the half's particles along its PC1, oriented as half set 1's
(``align-halves``), so that the same percentile names the same end of the motion in both
halves (``explore.state_percentiles``). For each state, every particle of the half is
brought into that state by the deformed backprojection (``reconstruct/state_maps.py``) and
the half's own quarter-FSC Wiener filter and mask are applied, as for the half maps of the
reference state. Writes ``state_NN.mrc`` and the state's pseudo-atoms
(``state_NN_reference.pt``) per state, and ``states.json``. Stage ``fsc-states`` puts the
two halves' maps of each state together.
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_run_argument, add_section_arguments
from dynamight_core.stages.backproject_deformed import add_deformed_inputs
from dynamight_core.stages.options import add_compute_arguments

logger = logging.getLogger(__name__)

HELP = "one half set's improved maps of chosen states along its (aligned) PC1"

STATES_KIND = "dynamight-state-maps"


def parse_percentiles(text: str | None) -> list[float]:
    """``"5,50,95"`` -> ``[5.0, 50.0, 95.0]``; fails on values outside 0-100 or none."""
    from dynamight_core.errors import InputError

    try:
        values = [float(part) for part in (text or "").split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(0.0 <= value <= 100.0 for value in values):
        raise InputError(
            "--state-percentiles",
            "explore.state_percentiles",
            "comma-separated percentiles from 0 to 100, e.g. 5,50,95",
            str(text),
        )
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the state maps."""
    add_deformed_inputs(parser)
    add_file_argument(parser, "--alignment", "the halves' PC1 orientation (align-halves)")
    add_section_arguments(
        parser, "deformed", only=("method", "control_grid", "batch_size", "tau2_fudge")
    )
    add_section_arguments(parser, "explore", only=("state_percentiles",))
    add_run_argument(parser, "--out-dir", "folder of the half's state maps", required=True)
    add_file_argument(parser, "--out-json", "the states: percentiles, latents, files (JSON)")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Reconstruct the half's particles in each state."""
    from dataclasses import replace
    from pathlib import Path

    import torch

    from dynamight_core.data.latent_alignment import alignment_for_model
    from dynamight_core.data.latent_space import latent_pca
    from dynamight_core.io.files import atomic_path, sha256_file, write_json_atomic
    from dynamight_core.io.identity import MapOrigin, split_id
    from dynamight_core.io.mrc import write_volume
    from dynamight_core.io.stacks import ImageSource
    from dynamight_core.reconstruct.deformed_filter import reconstruct_subset
    from dynamight_core.reconstruct.state_maps import state_latents, state_reference
    from dynamight_core.stages.common import (
        compute_device,
        deformed_geometry,
        read_checked_particles,
    )
    from dynamight_core.training.half_set_vae import load_half_set_vae

    percentiles = parse_percentiles(args.state_percentiles)
    alignment = alignment_for_model(args.alignment, args.half, sha256_file(args.model), args.model)
    if not alignment["aligned"]:
        logger.warning(
            "the halves' PC1 agree by only %.2f: the two halves' maps of a percentile may "
            "show different states",
            alignment["correlation"],
        )
    sign = int(alignment["sign"]) if args.half == 2 else 1
    particles = read_checked_particles(args)
    device = compute_device(args)
    source = ImageSource(particles)
    args.reference, args.shuffle_latents_seed = "trained", None
    rows, geometry = deformed_geometry(args, particles, source, device)
    real = geometry.latents[torch.as_tensor(rows, device=geometry.latents.device)].cpu()
    pca = latent_pca(real.double().numpy())
    latents = state_latents(pca, 0, sign, percentiles)
    half_state = geometry.reference  # the trained consensus, with the fit and mean states
    assert half_state is not None
    base = geometry.field
    vae = load_half_set_vae(args.model, device)
    model = vae.model.requires_grad_(False)
    split = split_id(args.halves)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    states = []
    for index, (percentile, latent) in enumerate(zip(percentiles, latents, strict=True)):
        reference = state_reference(
            model, latent, half_state.mean_a, half_state.fit_a, args.control_grid
        )
        in_state = replace(geometry, field=reference.field(base), reference=reference)
        logger.info("state %d: percentile %g of PC1, %d particles", index, percentile, len(rows))
        volume = reconstruct_subset(
            in_state, rows, rows, args.batch_size, particles.pixel_size_a, args.tau2_fudge
        )
        name = f"state_{index:02d}"
        origin = MapOrigin(name, args.half, split, vae.run)
        write_volume(out / f"{name}.mrc", volume, particles.pixel_size_a, origin)
        with atomic_path(out / f"{name}_reference.pt") as tmp:
            torch.save({**reference.state(), "half": args.half}, tmp)
        states.append(
            {
                "index": index,
                "percentile": percentile,
                "latent": [round(float(v), 6) for v in latent],
                "pc1_score": round(float(pca.project(latent[None])[0, 0]), 6),
                "map": f"{name}.mrc",
                "reference": f"{name}_reference.pt",
            }
        )
    source.close()
    write_json_atomic(
        args.out_json,
        {
            "kind": STATES_KIND,
            "half": args.half,
            "sign": sign,
            "alignment_correlation": alignment["correlation"],
            "model_sha256": sha256_file(args.model),
            "states": states,
        },
    )
