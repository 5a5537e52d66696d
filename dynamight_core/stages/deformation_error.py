"""Stage ``deformation-error``: how well the two half sets agree on each particle's motion.

Each half set held out validation particles that neither half trained on. Every one of
them is read by both halves' models (latent refined against its own image) and both
displacement fields are evaluated at the same points (half set 1's consensus Gaussians).
Their difference estimates the error of the estimated motions, as in DynaMight; a
constant offset per point (the two consensus references need not be the same state) is
removed first, and also reported. This is an evaluation: it feeds no map. Per
pseudo-atom, the RMS motion and the RMS disagreement over the same particles say where on
the model the motion is reliable, also per spatial region (k-means, ``report.regions``).
"""

from __future__ import annotations

import argparse
import logging

from dynamight_core.config_cli import add_file_argument, add_section_arguments
from dynamight_core.stages.options import add_compute_arguments, add_particle_arguments

logger = logging.getLogger(__name__)

HELP = "estimate the error of the motions from the disagreement of the two half sets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the error estimate."""
    add_particle_arguments(parser)
    add_file_argument(parser, "--halves", "half-set CSV from split-halves")
    add_file_argument(
        parser, "--models", "half set 1's and half set 2's trained VAE (train-vae)", nargs=2
    )
    add_section_arguments(parser, "vae", only=("batch_size",))
    add_file_argument(parser, "--out-json", "summary of the disagreement (JSON)")
    add_file_argument(parser, "--out-tsv", "error per validation particle (TSV)")
    add_section_arguments(parser, "report", only=("regions",))
    add_file_argument(parser, "--out-gaussians", "motion, error and region per pseudo-atom (TSV)")
    add_file_argument(parser, "--out-png", "motion and error drawn on the model (PNG)")
    add_compute_arguments(parser)


def run(args: argparse.Namespace) -> None:
    """Decode the validation particles with both models and compare."""
    import numpy as np
    import pandas as pd

    from dynamight_core.data.batches import BatchReader
    from dynamight_core.data.halves import read_split
    from dynamight_core.io.files import atomic_path, write_json_atomic
    from dynamight_core.io.stacks import ImageSource
    from dynamight_core.metrics.disagreement import disagreement, point_reliability
    from dynamight_core.report.figures import plot_on_model
    from dynamight_core.report.motion import region_table, spatial_regions
    from dynamight_core.stages.common import (
        check_half_set_models,
        compute_device,
        read_checked_particles,
    )
    from dynamight_core.training.half_set_vae import load_half_set_vae
    from dynamight_core.training.vae_steps import displacements_at

    particles = read_checked_particles(args)
    rows = np.sort(np.concatenate([read_split(args.halves, particles, half)[1] for half in (1, 2)]))
    device = compute_device(args)
    vaes = [load_half_set_vae(path, device) for path in args.models]
    check_half_set_models(args.models, vaes)
    for vae in vaes:
        vae.batch_size = args.batch_size
        vae.model.requires_grad_(False)
    points = vaes[0].model.consensus.positions.detach()
    source = ImageSource(particles)
    reader = BatchReader(particles, source, device)
    first, second = (displacements_at(vae, reader, rows, points) for vae in vaes)
    source.close()
    result = disagreement(first, second)
    per_point = point_reliability(first, second)
    positions = points.cpu().numpy() * vaes[0].model.consensus.box_a
    regions = spatial_regions(positions, args.regions)
    table_regions = region_table(positions, regions, per_point.motion_a, per_point.error_a)
    summary = {
        "validation_particles": len(rows),
        "median_error_a": round(float(np.median(result.error_a)), 4),
        "p90_error_a": round(float(np.percentile(result.error_a, 90)), 4),
        "median_error_with_offset_a": round(float(np.median(result.error_with_offset_a)), 4),
        "median_motion_a": round(float(np.median(result.motion_a)), 4),
        "definition": "RMS over half set 1's consensus Gaussians of the difference of the two "
        "halves' displacements, after removing each point's mean difference",
        "regions": table_regions,
    }
    logger.info(
        "half sets disagree by %.2f Å (median over %d validation particles; motion %.2f Å)",
        summary["median_error_a"],
        len(rows),
        summary["median_motion_a"],
    )
    table = pd.DataFrame(
        {
            "row": rows,
            "rlnImageName": np.array(particles.image_names())[rows],
            "error_a": result.error_a,
            "error_with_offset_a": result.error_with_offset_a,
            "motion_a": result.motion_a,
        }
    )
    with atomic_path(args.out_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    gaussians = pd.DataFrame(
        {
            "x_a": positions[:, 0],
            "y_a": positions[:, 1],
            "z_a": positions[:, 2],
            "motion_rms_a": per_point.motion_a,
            "error_rms_a": per_point.error_a,
            "region": regions,
        }
    )
    with atomic_path(args.out_gaussians) as tmp:
        gaussians.to_csv(tmp, sep="\t", index=False, float_format="%.5g")
    plot_on_model(
        args.out_png,
        positions,
        {
            "RMS motion": per_point.motion_a,
            "RMS error (half sets' disagreement)": per_point.error_a,
        },
    )
    write_json_atomic(args.out_json, summary)
