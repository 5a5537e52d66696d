"""Trajectories through the latent space as MRC series, ChimeraX scripts and animations.

A movie is a series of maps, one MRC file per frame, with a ChimeraX command script
(``.cxc``) beside it that opens them as one volume series and plays it back and forth;
for people without ChimeraX the same frames become a GIF (or an MP4 where ffmpeg is
installed) of the maps' projections along x, y and z.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dynamight_core.geometry.masks import enclosing_level
from dynamight_core.io.files import atomic_path
from dynamight_core.io.mrc import write_volume

logger = logging.getLogger(__name__)

ANIMATION_FORMATS = (".gif", ".mp4")


def frame_names(stem: str, count: int) -> list[str]:
    """File names ``stem_000.mrc, stem_001.mrc, ...`` of a series of ``count`` maps."""
    digits = max(3, len(str(count - 1)))
    return [f"{stem}_{index:0{digits}d}.mrc" for index in range(count)]


def write_map_series(
    frames: np.ndarray, pixel_size_a: float, folder: str | Path, stem: str
) -> list[Path]:
    """Write `(S, D, D, D)` maps as ``folder/stem_000.mrc ...`` (atomically, each)."""
    folder = Path(folder)
    paths = [folder / name for name in frame_names(stem, len(frames))]
    for path, frame in zip(paths, frames, strict=True):
        write_volume(path, frame, pixel_size_a)
    return paths


def surface_level(frames: np.ndarray, enclosed_fraction: float = 0.5) -> float:
    """A contour level for `(S, D, D, D)` maps of a Gaussian model.

    The level above which the voxels hold ``enclosed_fraction`` of the middle frame's
    positive density: the same surface in every frame (the model's mass does not change
    with the latent), tight enough to show domains, loose enough to show all of them.
    """
    return enclosing_level(frames[len(frames) // 2], enclosed_fraction)


def chimerax_script(
    map_names: Sequence[str],
    level: float,
    title: str,
    fps: float,
    pseudo_atoms: str | None = None,
    series: bool = True,
) -> str:
    """ChimeraX commands that open the maps (and pseudo-atoms) next to the script.

    ChimeraX runs a ``.cxc`` file with its folder as the working directory, so the names
    are relative and the folder can be moved or copied as a whole. With ``series`` the
    maps open as one volume series (``vseries``) that plays back and forth; otherwise each
    opens as its own model, coloured from blue to red along the path.
    """
    lines = [f"# {title}", "# open in ChimeraX: File > Open..., or `open <this file>`"]
    if series:
        pattern = _series_pattern(map_names)
        lines += [
            f"open {pattern} format mrc vseries true",
            f"volume #1 level {level:.6g} style surface",
            f"vseries play #1 loop true direction oscillate maxFrameRate {fps:.6g}",
        ]
    else:
        for index, name in enumerate(map_names):
            red = index / max(len(map_names) - 1, 1)
            colour = _hex_colour(red)
            lines += [
                f"open {name} format mrc",
                f"volume #{index + 1} level {level:.6g} style surface "
                f"color {colour} transparency 0.5",
            ]
    if pseudo_atoms:
        model = 2 if series else len(map_names) + 1
        lines += [
            f"open {pseudo_atoms} coordsets true",
            f"style #{model} sphere",
            f"color bfactor #{model} palette bluered",
        ]
    lines.append("view")
    return "\n".join(lines) + "\n"


def _series_pattern(map_names: Sequence[str]) -> str:
    """The wildcard matching exactly a series written by :func:`write_map_series`."""
    stems = {name.rsplit("_", 1)[0] for name in map_names}
    if len(stems) != 1:
        raise ValueError(f"a volume series needs one stem, got {sorted(stems)}")
    return f"{stems.pop()}_*.mrc"


def projections(frames: np.ndarray) -> np.ndarray:
    """`(S, D, 3 D)` projections of `(S, D, D, D)` maps along z, y and x, side by side."""
    volumes = np.asarray(frames, dtype=np.float32)
    views = [volumes.sum(axis=axis) for axis in (1, 2, 3)]  # along z, y, x
    return np.concatenate(views, axis=2)


def check_animation_path(path: str | Path) -> None:
    """Fail early for an animation that cannot be written here (format, ffmpeg)."""
    suffix = Path(path).suffix.lower()
    if suffix not in ANIMATION_FORMATS:
        raise ValueError(f"{path}: an animation is .gif or .mp4, not {suffix or 'no suffix'}")
    if suffix == ".mp4" and shutil.which("ffmpeg") is None:
        raise ValueError(f"{path}: writing MP4 needs ffmpeg on the PATH; write a .gif instead")


def write_animation(
    frames: np.ndarray, path: str | Path, fps: float, title: str, oscillate: bool = True
) -> None:
    """A GIF or MP4 of `(S, D, D, D)` maps projected along z, y and x.

    Every frame shares one grey scale (a motion shows as motion, not as flicker); with
    ``oscillate`` the movie runs forward then backward, so it loops without a jump.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import animation
    from matplotlib import pyplot as plt
    from matplotlib.artist import Artist

    check_animation_path(path)
    images = projections(frames)
    order = list(range(len(images)))
    if oscillate and len(images) > 2:
        order += order[-2:0:-1]
    low, high = np.percentile(images, [1.0, 99.9])
    height, width = images.shape[1:]
    figure = plt.figure(figsize=(width / 40, height / 40 + 0.4), dpi=80)
    axes = figure.add_axes((0.0, 0.0, 1.0, height / (height + 16)))
    axes.set_axis_off()
    shown = axes.imshow(images[0], cmap="gray", vmin=low, vmax=high, origin="lower")
    figure.suptitle(title, fontsize=8, y=0.995)
    label = axes.text(2, 2, "", color="yellow", fontsize=7)

    def draw(index: int) -> list[Artist]:
        shown.set_data(images[index])
        label.set_text(f"frame {index + 1}/{len(images)}   z | y | x")
        return [shown, label]

    movie = animation.FuncAnimation(figure, draw, frames=order, blit=False)
    suffix = Path(path).suffix.lower()
    # the writers take a float rate, whatever their annotation says
    rate: Any = fps
    writer = (
        animation.PillowWriter(fps=rate) if suffix == ".gif" else animation.FFMpegWriter(fps=rate)
    )
    with atomic_path(path) as tmp:
        # the writers choose the format from the suffix, which the temporary name lacks
        target = tmp.with_suffix(suffix)
        try:
            movie.save(str(target), writer=writer)
            target.replace(tmp)
        finally:
            target.unlink(missing_ok=True)
            plt.close(figure)
    logger.info("wrote %s (%d frames at %.3g fps)", path, len(order), fps)


def _hex_colour(fraction: float) -> str:
    """``#rrggbb`` from blue (0) through purple to red (1)."""
    red = round(255 * fraction)
    green = round(80 * (1 - abs(2 * fraction - 1)))
    return f"#{red:02x}{green:02x}{255 - red:02x}"
