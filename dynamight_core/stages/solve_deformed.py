"""Stage ``solve-deformed``: one half set's deformed map from its backprojection shards.

Adds the shards' sums (checking that they cover the half set exactly once), applies the
half's Wiener filter (the paper's homogeneous-filter approximation), then refines the map
by ``deformed.iterations`` conjugate-gradient iterations with the deformation inside the
forward model. Writes the half map (soft spherical solvent mask), the objective and
residual per iteration, and the map after every iteration (for the FSC between the
halves per iteration, stage ``fsc-deformed``).
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_section_arguments
from dynamight_core.stages.backproject_deformed import add_deformed_inputs
from dynamight_core.stages.options import add_checkpoint_argument, add_compute_arguments

logger = logging.getLogger(__name__)

HELP = "one half set's deformed map: filtered backprojection, then iterative refinement"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the solve."""
    add_deformed_inputs(parser)
    add_file_argument(
        parser, "--sums", "the half set's shard sums (backproject-deformed)", nargs="+"
    )
    add_section_arguments(
        parser,
        "deformed",
        only=("method", "reference", "control_grid", "batch_size", "iterations", "tau2_fudge"),
    )
    add_checkpoint_argument(parser)
    add_file_argument(parser, "--out-map", "the half map (MRC)")
    add_file_argument(
        parser,
        "--out-reference",
        "the state the map is in: reference, trained, consensus-fit and mean pseudo-atom "
        "positions (.pt)",
        default=None,
    )
    add_file_argument(parser, "--out-history", "objective and residual per iteration (TSV)")
    add_file_argument(parser, "--out-iterations", "the masked map after every iteration (.pt)")
    add_compute_arguments(parser)


def _read_sums(
    paths: list[str], device: object, shuffle_seed: int | None, reference: str
) -> object:
    """The sums of every shard, added; fails naming a file that is not a shard's sums.

    Each shard must have been made with the same latents: shuffled with ``shuffle_seed``
    (the null control) or not shuffled (``None``), and in the same ``reference`` state.
    """
    import torch

    from dynamight_core.errors import InputError
    from dynamight_core.reconstruct.deformed import DeformedSums
    from dynamight_core.stages.backproject_deformed import SUMS_KIND

    total = None
    for path in paths:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("kind") != SUMS_KIND:
            raise InputError(path, "kind", "sums from backproject-deformed", "another file")
        settings = payload.get("settings", {})
        for key, expected, missing, hint in (
            (
                "shuffle_latents_seed",
                shuffle_seed,
                None,
                "The null control's sums and the real run's must not be mixed.",
            ),
            (
                "reference",
                reference,
                "trained",  # sums written before the setting
                "Sums made in another reference state must not be mixed; run "
                "backproject-deformed again with this deformed.reference.",
            ),
        ):
            made_with = settings.get(key, missing)
            if made_with != expected:
                raise InputError(path, f"settings.{key}", str(expected), str(made_with), hint)
        sums = DeformedSums.from_state(payload["sums"], device)  # type: ignore[arg-type]
        try:
            total = sums if total is None else total.merged(sums)
        except ValueError as error:
            raise InputError(path, "sums", "a shard disjoint from the others", str(error)) from None
    return total


def run(args: argparse.Namespace) -> None:
    """Filter, refine and write the half map."""
    import numpy as np
    import pandas as pd
    import torch

    from dynamight_core.errors import InputError
    from dynamight_core.io.files import atomic_path
    from dynamight_core.io.identity import MapOrigin, split_id
    from dynamight_core.io.mrc import write_volume
    from dynamight_core.io.stacks import ImageSource
    from dynamight_core.reconstruct.deformed import DeformedSums
    from dynamight_core.reconstruct.deformed_filter import filtered_backprojection, masked_half_map
    from dynamight_core.reconstruct.deformed_solve import normal_pass, refine
    from dynamight_core.stages.common import (
        compute_device,
        deformed_geometry,
        read_checked_particles,
        stage_checkpointer,
    )
    from dynamight_core.training.half_set_vae import half_set_vae_run

    particles = read_checked_particles(args)
    device = compute_device(args)
    source = ImageSource(particles)
    rows, geometry = deformed_geometry(args, particles, source, device)
    sums = _read_sums(args.sums, device, args.shuffle_latents_seed, args.reference)
    assert isinstance(sums, DeformedSums)
    support = geometry.projector.support
    if not np.array_equal(np.sort(sums.rows), rows):
        raise InputError(
            args.sums[0],
            "rows",
            f"the {len(rows)} particles of half set {args.half}, each once",
            f"{len(sums.rows)} particles in {len(args.sums)} shard files",
            "Pass every shard of this half set (and only those).",
        )
    if abs(sums.radius_px - support.radius_px) > 1e-6:
        raise InputError(
            args.sums[0], "radius_px", f"{support.radius_px:.3f}", f"{sums.radius_px:.3f}"
        )
    start = filtered_backprojection(sums, support, particles.pixel_size_a, args.tau2_fudge)
    settings = {
        key: getattr(args, key)
        for key in (
            "method",
            "reference",
            "control_grid",
            "iterations",
            "tau2_fudge",
            "half",
            "shuffle_latents_seed",
        )
    }
    checkpointer = stage_checkpointer(
        args,
        "solve-deformed",
        settings,
        {
            "model": args.model,
            "latents": args.latents,
            "inverse_model": args.inverse_model,
            "consensus_fit": args.consensus_fit,
            **{f"sums_{i}": path for i, path in enumerate(args.sums)},
        },
    )
    states = refine(
        start,
        sums,
        lambda values: normal_pass(geometry, rows, values, args.batch_size),
        args.iterations,
        checkpointer,
    )
    state = list(states)[-1]
    source.close()
    iterates = [
        torch.from_numpy(masked_half_map(values, support, start.gain)) for values in state.snapshots
    ]
    history = state.history
    final = iterates[-1].numpy()
    kind = "deformed" if args.shuffle_latents_seed is None else "null"
    origin = MapOrigin(kind, args.half, split_id(args.halves), half_set_vae_run(args.model))
    write_volume(args.out_map, final, particles.pixel_size_a, origin)
    with atomic_path(args.out_iterations) as tmp:
        torch.save({"maps": torch.stack(iterates), "pixel_size_a": particles.pixel_size_a}, tmp)
    table = pd.DataFrame(history)
    table["quarter_fsc_mean"] = float(np.mean(start.quarter_fsc[1:]))
    with atomic_path(args.out_history) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.8g")
    if args.out_reference:
        reference = geometry.reference
        assert reference is not None
        with atomic_path(args.out_reference) as tmp:
            torch.save({**reference.state(), "half": args.half}, tmp)
    if checkpointer:
        checkpointer.clear()
