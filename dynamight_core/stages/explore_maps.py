"""Action ``explore maps``: density maps of a half set's model at chosen latent points.

The points are explicit (``--points``), k-means centres of the latents (``--clusters``), or
evenly spaced percentiles of the particles' scores along one principal component (the
default: ``explore.states`` maps along PC1). For every point: the Gaussian model rendered
on the consensus grid (``state_NNN.mrc``) and, with ``explore.reconstruct_nearest`` > 0,
the deformed reconstruction of the half set's particles nearest the point in latent space
(``reconstruction_NNN.mrc``: the improved-map code on that subset, each image brought to
the consensus frame through its own motion, then the map moved into the point's state
with the model's field). Also written: the
pseudo-atoms (consensus first, then one model per point; B-factor per ``explore.bfactor``),
``points.csv``, ``maps.json`` and a ChimeraX script ``maps.cxc`` that opens it all.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from dynamight_core.config_cli import add_file_argument, add_run_argument, add_section_arguments
from dynamight_core.stages.explore_options import (
    add_alignment_argument,
    add_component_argument,
    add_half_set_inputs,
)
from dynamight_core.stages.options import add_compute_arguments

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

    from dynamight_core.models.deformation import DeformationModel
    from dynamight_core.training.half_set_vae import HalfSetVae

logger = logging.getLogger(__name__)

HELP = "density maps and pseudo-atoms of a half set's model at chosen latent points"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``explore maps``."""
    add_half_set_inputs(parser)
    add_file_argument(
        parser, "--out-dir", "folder for state_NNN.mrc, points.csv, maps.json and maps.cxc"
    )
    add_file_argument(parser, "--out-cif", "pseudo-atoms, mmCIF", default=None)
    add_file_argument(parser, "--out-pdb", "pseudo-atoms, PDB (up to 99,999)", default=None)
    add_run_argument(
        parser,
        "--points",
        "latent points 'z1,...,zL;z1,...,zL' (one map each; write --points=-0.5,... when the "
        "first value is negative)",
        default=None,
    )
    add_run_argument(
        parser,
        "--clusters",
        "maps at the centres of this many k-means clusters",
        type=int,
        default=None,
    )
    add_component_argument(parser)
    add_alignment_argument(parser)
    add_section_arguments(
        parser,
        "explore",
        only=("states", "low_percentile", "high_percentile", "bfactor", "reconstruct_nearest"),
    )
    add_file_argument(
        parser,
        "--error-tsv",
        "deformation-error's per-pseudo-atom table (for --bfactor disagreement)",
        default=None,
    )
    add_file_argument(
        parser, "--star", "particle STAR file (for --reconstruct-nearest)", default=None
    )
    add_file_argument(
        parser, "--project-root", "RELION project directory for image paths", default=None
    )
    add_file_argument(parser, "--halves", "half-set CSV (for --reconstruct-nearest)", default=None)
    add_file_argument(
        parser,
        "--inverse-model",
        "the half set's inverse network, for --method inverse",
        default=None,
    )
    add_section_arguments(
        parser, "deformed", only=("method", "control_grid", "batch_size", "tau2_fudge")
    )
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Choose the points, render the maps, write pseudo-atoms and the ChimeraX script."""
    import numpy as np
    import pandas as pd

    from dynamight_core.data.latent_space import (
        latent_clusters,
        latents_at_percentiles,
    )
    from dynamight_core.data.latents import check_latents_match_model, read_latent_means
    from dynamight_core.errors import InputError
    from dynamight_core.explore.movie import (
        chimerax_script,
        surface_level,
        write_map_series,
    )
    from dynamight_core.explore.states import render_states
    from dynamight_core.io.files import atomic_path, write_json_atomic, write_text_atomic
    from dynamight_core.stages.common import compute_device
    from dynamight_core.stages.explore_options import (
        check_component,
        oriented_pca,
        parse_latent_points,
        percentile_steps,
    )
    from dynamight_core.training.half_set_vae import load_half_set_vae

    if args.points and args.clusters:
        raise InputError("--points/--clusters", "points", "one way to choose points", "both")
    if args.reconstruct_nearest and not (args.star and args.halves):
        raise InputError(
            "--reconstruct-nearest",
            "--star, --halves",
            "the particles and their half sets, to reconstruct from the nearest particles",
            "not given",
        )
    if args.bfactor == "disagreement" and not args.error_tsv:
        raise InputError(
            "--bfactor disagreement", "--error-tsv", "deformation-error's table", "not given"
        )
    table, latents = read_latent_means(args.latents)
    device = compute_device(args)
    vae = load_half_set_vae(args.model, device)
    check_latents_match_model(args.latents, table, args.model, vae)
    model = vae.model.requires_grad_(False)
    pca, _ = oriented_pca(args, latents, vae.half)
    labels = None
    if args.points:
        points = parse_latent_points(args.points, latents.shape[1], latents=latents)
        how = "explicit points"
    elif args.clusters:
        points, labels = latent_clusters(latents, args.clusters)
        how = f"centres of {len(points)} k-means clusters"
    else:
        check_component(args.component, latents.shape[1])
        percentiles = percentile_steps(args.low_percentile, args.high_percentile, args.states)
        points = latents_at_percentiles(pca, args.component - 1, percentiles)
        how = f"PC{args.component} at percentiles " + ", ".join(f"{p:.4g}" for p in percentiles)
    pixel_size_a = model.consensus.pixel_size_a
    logger.info("half set %d: %d maps at %s", vae.half, len(points), how)
    maps = render_states(model, points)
    names = [p.name for p in write_map_series(maps, pixel_size_a, args.out_dir, "state")]
    reconstructions = _reconstruct_nearest(args, vae, table, latents, points, device)
    _write_pseudo_atoms(args, model, latents, points)
    scores = pca.project(points)
    rows = []
    for index, name in enumerate(names):
        row: dict[str, object] = {
            "map": name,
            "reconstruction": reconstructions[index] if reconstructions else "",
        }
        row.update({f"pc{k + 1}": scores[index, k] for k in range(scores.shape[1])})
        row.update({f"mu_{k}": points[index, k] for k in range(points.shape[1])})
        if labels is not None:
            row["particles"] = int((labels == index).sum())
        rows.append(row)
    with atomic_path(f"{args.out_dir}/points.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.6g")
    if labels is not None:
        with atomic_path(f"{args.out_dir}/clusters.csv") as tmp:
            pd.DataFrame({"row": table["row"], "cluster": labels}).to_csv(tmp, index=False)
    level = surface_level(maps)
    pseudo = _relative(args.out_cif, args.out_dir)
    title = f"DynaMight-core, half set {vae.half}: the model at {how}"
    write_text_atomic(
        f"{args.out_dir}/maps.cxc",
        chimerax_script(names, level, title, fps=1.0, pseudo_atoms=pseudo, series=False),
    )
    write_json_atomic(
        f"{args.out_dir}/maps.json",
        {
            "half": vae.half,
            "points": how,
            "maps": names,
            "reconstructions": reconstructions,
            "pixel_size_a": pixel_size_a,
            "surface_level": level,
            "bfactor": args.bfactor,
            "pc_scores": np.round(scores, 5).tolist(),
        },
    )


def _relative(path: str | None, folder: str) -> str | None:
    """``path`` relative to ``folder`` (for the ChimeraX script), or None."""
    import os

    return None if path is None else os.path.relpath(path, folder)


def _write_pseudo_atoms(
    args: argparse.Namespace, model: DeformationModel, latents: np.ndarray, points: np.ndarray
) -> None:
    """Consensus and states as pseudo-atoms, B-factor per ``--bfactor``."""
    import numpy as np
    import pandas as pd

    from dynamight_core.errors import InputError
    from dynamight_core.explore.pseudo_atoms import (
        pseudo_atom_structure,
        values_at_nearest,
        write_pseudo_atoms,
    )
    from dynamight_core.explore.states import map_frame_a, state_positions_a
    from dynamight_core.models.deformation import displacement_rms_a

    if not args.out_cif:
        return
    consensus = model.consensus
    positions = consensus.positions_a().detach().double().cpu().numpy()
    if args.bfactor == "disagreement":
        error = pd.read_csv(args.error_tsv, sep="\t")
        needed = ["x_a", "y_a", "z_a", "error_rms_a"]
        if not set(needed) <= set(error.columns):
            raise InputError(args.error_tsv, ",".join(needed), "columns", "absent")
        bfactors = values_at_nearest(
            positions, error[needed[:3]].to_numpy(), error["error_rms_a"].to_numpy()
        )
    else:
        bfactors = displacement_rms_a(model, latents)
    states = np.concatenate([positions[None], state_positions_a(model, points)])
    frame = map_frame_a(states, consensus.box_px, consensus.pixel_size_a)
    structure = pseudo_atom_structure(
        frame, bfactors, consensus.box_a, "dynamight-core pseudo-atoms"
    )
    write_pseudo_atoms(structure, args.out_cif, args.out_pdb)


def _reconstruct_nearest(
    args: argparse.Namespace,
    vae: HalfSetVae,
    table: pd.DataFrame,
    latents: np.ndarray,
    points: np.ndarray,
    device: torch.device,
) -> list[str]:
    """Deformed maps of the ``--reconstruct-nearest`` particles nearest each point."""
    import numpy as np

    from dynamight_core.data.latent_space import nearest
    from dynamight_core.io.mrc import write_volume
    from dynamight_core.io.stacks import ImageSource
    from dynamight_core.reconstruct.deformed_filter import push_to_state, reconstruct_subset
    from dynamight_core.stages.common import deformed_geometry, read_checked_particles

    if not args.reconstruct_nearest:
        return []
    args.half = vae.half
    args.shuffle_latents_seed = None
    particles = read_checked_particles(args)
    source = ImageSource(particles)
    half_rows, geometry = deformed_geometry(args, particles, source, device)
    star_rows = table["row"].to_numpy(dtype=np.int64)
    names = []
    for index, point in enumerate(points):
        chosen = np.sort(star_rows[nearest(latents, point, args.reconstruct_nearest)])
        logger.info("map %d: deformed reconstruction of %d particles", index, len(chosen))
        consensus_frame = reconstruct_subset(
            geometry, half_rows, chosen, args.batch_size, particles.pixel_size_a, args.tau2_fudge
        )
        volume = push_to_state(geometry, consensus_frame, point)
        name = f"reconstruction_{index:03d}.mrc"
        write_volume(f"{args.out_dir}/{name}", volume, particles.pixel_size_a)
        names.append(name)
    source.close()
    return names
