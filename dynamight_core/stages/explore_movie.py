"""Action ``explore movie``: a trajectory through a half set's latent space.

Along one principal component (from ``explore.low_percentile`` to ``high_percentile`` of
the particles' scores, the default PC1) or between two latent points (``--start``,
``--end``): ``explore.movie_frames`` maps of the model (``frame_NNN.mrc``), the same
states as pseudo-atoms (``movie.cif``/``movie.pdb``, one coordinate set per frame), a
ChimeraX script ``movie.cxc`` that opens the maps as a volume series and plays it, and an
animation of the maps' projections (GIF, or MP4 where ffmpeg is installed).
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_run_argument, add_section_arguments
from dynamight_core.stages.explore_options import (
    add_alignment_argument,
    add_component_argument,
    add_half_set_inputs,
)
from dynamight_core.stages.options import add_compute_arguments

logger = logging.getLogger(__name__)

HELP = "a movie along a principal component or between two latent points (MRC, .cxc, GIF)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``explore movie``."""
    add_half_set_inputs(parser)
    add_file_argument(
        parser, "--out-dir", "folder for frame_NNN.mrc, movie.cxc, movie.cif/.pdb, movie.json"
    )
    add_file_argument(
        parser,
        "--out-animation",
        "projections of the frames as an animation (.gif, or .mp4 with ffmpeg; "
        "default: OUT_DIR/movie.gif)",
        default=None,
    )
    add_run_argument(
        parser,
        "--start",
        "first latent point 'z1,...,zL' (--start=-0.5,... if negative)",
        default=None,
    )
    add_run_argument(
        parser, "--end", "last latent point 'z1,...,zL' (--end=-0.5,... if negative)", default=None
    )
    add_component_argument(parser)
    add_alignment_argument(parser)
    add_section_arguments(
        parser,
        "explore",
        only=("movie_frames", "movie_fps", "low_percentile", "high_percentile"),
    )
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Compute the path, render the frames and write the series, script and animation."""
    from pathlib import Path

    import numpy as np

    from dynamight_core.data.latent_space import latent_path, latents_at_percentiles
    from dynamight_core.data.latents import check_latents_match_model, read_latent_means
    from dynamight_core.errors import InputError
    from dynamight_core.explore.movie import (
        check_animation_path,
        chimerax_script,
        surface_level,
        write_animation,
        write_map_series,
    )
    from dynamight_core.explore.pseudo_atoms import pseudo_atom_structure, write_pseudo_atoms
    from dynamight_core.explore.states import map_frame_a, render_states, state_positions_a
    from dynamight_core.io.files import write_json_atomic, write_text_atomic
    from dynamight_core.models.deformation import displacement_rms_a
    from dynamight_core.stages.common import compute_device
    from dynamight_core.stages.explore_options import (
        check_component,
        oriented_pca,
        parse_latent_points,
        percentile_steps,
    )
    from dynamight_core.training.half_set_vae import load_half_set_vae

    animation = args.out_animation or str(Path(args.out_dir) / "movie.gif")
    try:
        check_animation_path(animation)
    except ValueError as err:
        raise InputError(
            animation, "--out-animation", "a .gif, or .mp4 with ffmpeg", str(err)
        ) from None
    if (args.start is None) != (args.end is None):
        raise InputError("--start/--end", "points", "both or neither", "only one")
    table, latents = read_latent_means(args.latents)
    device = compute_device(args)
    vae = load_half_set_vae(args.model, device)
    check_latents_match_model(args.latents, table, args.model, vae)
    model = vae.model.requires_grad_(False)
    pca, _ = oriented_pca(args, latents, vae.half)
    if args.start is not None:
        start = parse_latent_points(args.start, latents.shape[1], "--start", latents)[0]
        end = parse_latent_points(args.end, latents.shape[1], "--end", latents)[0]
        path = latent_path(start, end, args.movie_frames)
        how = "a straight path between two latent points"
    else:
        check_component(args.component, latents.shape[1])
        ends = percentile_steps(args.low_percentile, args.high_percentile, 2)
        start, end = latents_at_percentiles(pca, args.component - 1, ends)
        path = latent_path(start, end, args.movie_frames)
        how = (
            f"PC{args.component} from the {ends[0]:.3g}th to the {ends[1]:.3g}th percentile "
            "of the particles' scores"
        )
    logger.info("half set %d: %d frames along %s", vae.half, len(path), how)
    frames = render_states(model, path)
    consensus = model.consensus
    names = [
        p.name for p in write_map_series(frames, consensus.pixel_size_a, args.out_dir, "frame")
    ]
    positions = map_frame_a(
        state_positions_a(model, path), consensus.box_px, consensus.pixel_size_a
    )
    structure = pseudo_atom_structure(
        positions, displacement_rms_a(model, latents), consensus.box_a, "dynamight-core movie"
    )
    out_dir = Path(args.out_dir)
    write_pseudo_atoms(structure, out_dir / "movie.cif", out_dir / "movie.pdb")
    level = surface_level(frames)
    title = f"DynaMight-core, half set {vae.half}: {how}"
    write_text_atomic(
        out_dir / "movie.cxc",
        chimerax_script(names, level, title, args.movie_fps, pseudo_atoms="movie.cif"),
    )
    write_animation(frames, animation, args.movie_fps, f"half set {vae.half}: {how}")
    scores = pca.project(path)
    write_json_atomic(
        out_dir / "movie.json",
        {
            "half": vae.half,
            "path": how,
            "frames": names,
            "animation": Path(animation).name,
            "fps": args.movie_fps,
            "surface_level": level,
            "pc_scores": np.round(scores, 5).tolist(),
        },
    )
