"""Options and inputs shared by the ``explore`` actions."""

from __future__ import annotations

import argparse
from typing import Any

from dynamight_core.config_cli import add_file_argument, add_run_argument


def add_half_set_inputs(parser: argparse.ArgumentParser) -> None:
    """The half set's trained VAE and its latent table."""
    add_file_argument(parser, "--model", "the half set's trained VAE (train-vae's model.pt)")
    add_file_argument(parser, "--latents", "the half set's latent table (train-vae's latents.csv)")


def add_component_argument(parser: argparse.ArgumentParser) -> None:
    """Which principal component a path follows."""
    add_run_argument(
        parser,
        "--component",
        "principal component of the latent means to follow (1 = PC1)",
        type=int,
        default=1,
    )


LATENT_REACH = 10.0
"""How far a latent point may lie: this many times the farthest particle's largest latent
coordinate (and at least this many prior standard deviations, the prior being N(0, 1))."""


def parse_latent_points(
    text: str, latent_dim: int, source: str = "--points", latents: Any = None
) -> Any:
    """`(S, L)` latent points from ``"z1,z2,...;z1,z2,..."`` (one point per ``;``).

    Every coordinate must be finite and, when the half set's `(N, L)` ``latents`` are
    given, within ``LATENT_REACH`` times their largest absolute coordinate (at least
    ``LATENT_REACH``): the decoder was never trained farther out, and its maps there are
    meaningless or not finite.
    """
    points = _parse_points(text, latent_dim, source)
    check_latent_points(points, source, latents)
    return points


def check_latent_points(points: Any, source: str, latents: Any = None) -> None:
    """Fail unless every coordinate of the `(S, L)` ``points`` is finite and within reach.

    Raises
    ------
    InputError
        Naming ``source``, the reach and the first bad point.
    """
    import numpy as np

    from dynamight_core.errors import InputError

    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise InputError(
            source, "point", "finite coordinates", f"{points[np.argmax(bad)].tolist()}"
        )
    if latents is None or np.size(latents) == 0:
        return
    reach = LATENT_REACH * max(1.0, float(np.nanmax(np.abs(latents))))
    far = np.abs(points).max(axis=1) > reach
    if far.any():
        raise InputError(
            source,
            "point",
            f"coordinates within ±{reach:.3g} ({LATENT_REACH:g} times the half set's "
            "farthest latent coordinate)",
            f"{points[np.argmax(far)].tolist()}",
            "The model was trained on latents near its particles' only",
        )


def _parse_points(text: str, latent_dim: int, source: str) -> Any:
    """`(S, L)` float64 points from ``"z1,...;z1,..."`` (numbers and counts checked)."""
    import numpy as np

    from dynamight_core.errors import InputError

    points = []
    for part in (p for p in text.split(";") if p.strip()):
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError:
            raise InputError(source, "point", "comma-separated numbers", repr(part)) from None
        if len(values) != latent_dim:
            raise InputError(
                source,
                "point",
                f"{latent_dim} coordinates (the latent dimension)",
                f"{len(values)} in {part!r}",
            )
        points.append(values)
    if not points:
        raise InputError(source, "points", "at least one point 'z1,...,zL'", repr(text))
    return np.asarray(points, dtype=np.float64)


def check_component(component: int, latent_dim: int) -> None:
    """Fail unless ``component`` (1-based) is a principal component of the latent space."""
    from dynamight_core.errors import InputError

    if not 1 <= component <= latent_dim:
        raise InputError(
            "--component", "component", f"1 .. {latent_dim} (the latent dimension)", str(component)
        )


def percentile_steps(low: float, high: float, count: int) -> Any:
    """`(count,)` evenly spaced percentiles from ``low`` to ``high``."""
    import numpy as np

    from dynamight_core.errors import InputError

    if not 0.0 <= low < high <= 100.0:
        raise InputError(
            "--low-percentile/--high-percentile",
            "percentiles",
            "0 <= low < high <= 100",
            f"{low} and {high}",
        )
    return np.linspace(low, high, count)


def add_alignment_argument(parser: argparse.ArgumentParser) -> None:
    """align-halves' record, which orients half set 2's PC1 as half set 1's."""
    add_file_argument(
        parser,
        "--alignment",
        "align-halves' alignment.json: half set 2's PC1 is shown oriented as half set 1's "
        "(default: each half set's own sign, which is arbitrary)",
        default=None,
    )


def oriented_pca(args: argparse.Namespace, latents: Any, half: int) -> tuple[Any, Any]:
    """The half set's latent PCA with PC1 oriented by ``args.alignment`` (when given).

    Returns the :class:`~dynamight_core.data.latent_space.LatentPca` of `(P, L)`
    ``latents`` and the :class:`~dynamight_core.data.latent_alignment.HalfOrientation`
    (``None`` without an alignment). Checks that the alignment was made with ``args.model``.
    """
    import logging

    from dynamight_core.data.latent_alignment import half_orientation
    from dynamight_core.data.latent_space import latent_pca
    from dynamight_core.io.files import sha256_file

    pca = latent_pca(latents)
    if args.alignment is None:
        return pca, None
    orientation = half_orientation(args.alignment, half, sha256_file(args.model))
    if not orientation.aligned:
        logging.getLogger(__name__).warning(
            "the half sets' PC1 agree by only %.2f (%s): half set %d's PC1 keeps its own sign "
            "and may run the other way",
            orientation.agreement,
            args.alignment,
            half,
        )
    return pca.with_pc1_sign(orientation.sign), orientation
