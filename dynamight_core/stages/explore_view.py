"""Action ``explore view``: the optional napari viewer of one half set's latent space.

Needs a display and the viewer extra (``pip install -e '.[viewer]'``: napari with a Qt
binding). It shows the model at a clicked point of the PC1/PC2 plane, plays a trajectory
along PC1 and saves a polygon selection of particles as RELION STAR subsets. Each of these
has a headless command: ``explore maps``, ``explore movie`` and ``explore select``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from dynamight_core.config_cli import add_file_argument
from dynamight_core.stages.options import add_compute_arguments

logger = logging.getLogger(__name__)

HELP = "napari viewer of a half set's latent space (optional extra; needs a display)"

HEADLESS = (
    "Without it, use the headless commands: 'explore maps' (maps at latent points), "
    "'explore movie' (a trajectory as maps and a GIF) and 'explore select' (STAR subsets "
    "by latent region)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``explore view``."""
    add_file_argument(parser, "--model", "the half set's trained VAE (train-vae's model.pt)")
    add_file_argument(parser, "--latents", "the half set's latent table (train-vae's latents.csv)")
    add_file_argument(
        parser,
        "--star",
        "the particle STAR file the latents were trained on (needed to save selections)",
        default=None,
    )
    add_file_argument(
        parser,
        "--out-dir",
        "folder for the saved selection (selected.star, complement.star)",
        default="explore_selection",
    )
    add_compute_arguments(parser)


def _check_viewer_available() -> None:
    """Fail with a clear message without napari, without a display or without a Qt binding.

    napari itself imports no Qt; the display is checked before Qt is imported (a Qt
    application started without one aborts the process).
    """
    from dynamight_core.errors import InputError

    try:
        import napari  # noqa: F401
    except ImportError as err:
        raise InputError(
            "napari",
            "module",
            "the optional viewer (pip install -e '.[viewer]')",
            f"not installed ({err})",
            HEADLESS,
        ) from None
    if sys.platform.startswith("linux") and not any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    ):
        raise InputError(
            "DISPLAY",
            "environment",
            "a display for the viewer (DISPLAY or WAYLAND_DISPLAY: a desktop session or "
            "ssh -X; or QT_QPA_PLATFORM)",
            "no display",
            HEADLESS,
        )
    try:
        import qtpy  # noqa: F401
    except ImportError as err:  # qtpy's QtBindingsNotFoundError is an ImportError
        raise InputError(
            "qtpy",
            "module",
            "a Qt binding for napari (pip install -e '.[viewer]')",
            f"none usable ({err})",
            HEADLESS,
        ) from None


def run(args: argparse.Namespace) -> None:
    """Check for napari and a display, build the session and open the viewer."""
    _check_viewer_available()
    from dynamight_core.stages.common import compute_device
    from dynamight_core.viewer.app import launch
    from dynamight_core.viewer.session import ExploreSession

    session = ExploreSession(args.model, args.latents, args.star, compute_device(args))
    logger.info(
        "half set %d: %d particles, latent dimension %d; saving selections to %s",
        session.half,
        len(session.rows),
        session.latent_dim,
        args.out_dir,
    )
    launch(session, args.out_dir)
