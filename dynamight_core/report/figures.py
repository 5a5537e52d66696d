"""Figures of the validation report (matplotlib, headless, written atomically as PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dynamight_core.geometry.masks import enclosing_level
from dynamight_core.io.files import atomic_path
from dynamight_core.metrics.plots import mark_threshold, resolution_axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dynamight_core.report.postprocessing import Postprocessed

SLICE_AXES = ("z", "y", "x")


def _save(fig: Figure, path: str | Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _frequency(resolution_a: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(resolution_a), 1.0 / resolution_a, 0.0)


def plot_postprocess(path: str | Path, result: Postprocessed, label: str) -> None:
    """FSC curves (unmasked, masked, phase-randomised, corrected) and the Guinier plot."""
    curves = result.curves
    frequency = _frequency(curves.unmasked.resolution_a)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    fsc_curves = {
        "unmasked": curves.unmasked.fsc,
        "masked": curves.masked.fsc,
        "phase-randomised, masked": curves.randomised_masked.fsc,
        "corrected": curves.corrected.fsc,
    }
    for name, values in fsc_curves.items():
        left.plot(frequency, values, label=name, linewidth=1.4)
    left.axhline(0.0, color="black", linewidth=0.5)
    left.set(xlabel="spatial frequency (1/Å)", ylabel="FSC", ylim=(-0.1, 1.05))
    left.set_xlim(0, frequency.max())
    # the phase-randomised curve's crossing means nothing: only the others are marked
    mark_threshold(left, frequency, {k: v for k, v in fsc_curves.items() if "randomised" not in k})
    resolution_axis(left).set_title(f"{label}: half-map FSC")
    left.legend(fontsize=7, loc="upper right")
    guinier = result.guinier
    if guinier is None:
        right.text(0.5, 0.5, "no Guinier fit\n(no resolution)", ha="center", va="center")
        right.set_title("Guinier plot")
        _save(fig, path)
        return
    s2, log_amplitude = guinier.squared_frequency_a2, guinier.log_amplitude
    fitted = guinier.fitted
    # up to 1.5x the fit's highest frequency: beyond, FSC weighting has zeroed the shells
    shown = np.isfinite(log_amplitude) & (s2 <= 1.5 * s2[fitted].max())
    right.plot(
        s2[shown], log_amplitude[shown], ".", markersize=3, color="grey", label="FSC-weighted map"
    )
    line = guinier.intercept - guinier.bfactor_a2 / 4.0 * s2[fitted]
    right.plot(s2[fitted], line, color="C3", label=f"fit: B = {guinier.bfactor_a2:.0f} Å²")
    right.set(xlabel="1/d² (1/Å²)", ylabel="ln amplitude")
    right.set_title("Guinier plot")
    right.legend(fontsize=7)
    _save(fig, path)


def _extent_a(shape: tuple[int, ...], pixel_a: float) -> tuple[float, float, float, float]:
    """The ``extent`` of a `(D, D)` section's image: Å from the box's corner."""
    return (0.0, shape[1] * pixel_a, 0.0, shape[0] * pixel_a)


def central_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The three `(D, D)` central sections of a `(D, D, D)` map, normal to z, y and x."""
    centre = volume.shape[0] // 2
    return [volume[centre], volume[:, centre], volume[:, :, centre]]


def plot_local_resolution(
    path: str | Path,
    maps_a: Mapping[str, np.ndarray],
    difference_a: np.ndarray,
    nyquist_a: float,
    densities: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Colour-coded central slices of each local-resolution map and of their difference.

    Parameters
    ----------
    maps_a
        Label -> `(D, D, D)` local resolution (Å), NaN outside the mask.
    difference_a
        `(D, D, D)` consensus minus deformed local resolution (Å; positive where the deformed
        map is finer).
    nyquist_a
        Nyquist resolution (Å), the colour scale's best end; ``nyquist_a / 2`` is the pixel
        size, which gives the axes in Å.
    densities
        Label -> `(D, D, D)` full map whose contour (the level enclosing half its positive
        density) is drawn over that label's sections; the gain row takes the deformed map's.
    """
    pixel_a = nyquist_a / 2.0
    values = np.concatenate([m[np.isfinite(m)] for m in maps_a.values()])
    limits = (nyquist_a, float(np.percentile(values, 98))) if values.size else (nyquist_a, 1.0)
    rows = [*maps_a.items(), ("gain (consensus - deformed)", difference_a)]
    fig, axes = plt.subplots(len(rows), 4, figsize=(12, 3.0 * len(rows)), dpi=90)
    for (label, volume), row in zip(rows, axes, strict=True):
        is_gain = label.startswith("gain")
        finite = volume[np.isfinite(volume)]
        span = float(np.percentile(np.abs(finite), 98)) if finite.size and is_gain else 1.0
        for index, (section, ax) in enumerate(zip(central_slices(volume), row[:3], strict=True)):
            extent = _extent_a(section.shape, pixel_a)
            if is_gain:
                image = ax.imshow(
                    section, cmap="RdBu", vmin=-span, vmax=span, origin="lower", extent=extent
                )
            else:
                image = ax.imshow(
                    section,
                    cmap="turbo",
                    vmin=limits[0],
                    vmax=limits[1],
                    origin="lower",
                    extent=extent,
                )
            density = (densities or {}).get("deformed" if is_gain else label)
            if density is not None:
                level = enclosing_level(density)
                ax.contour(
                    central_slices(density)[index],
                    levels=[level],
                    colors="k",
                    linewidths=0.7,
                    extent=extent,
                    origin="lower",
                )
            ax.set_title(f"{label}: {SLICE_AXES[index]} = centre", fontsize=8)
            _, across, up = SECTION_AXES[index]
            ax.set_xlabel(f"{across} (Å)", fontsize=8)
            ax.set_ylabel(f"{up} (Å)", fontsize=8)
            ax.tick_params(labelsize=7)
        unit = "gain (Å)" if is_gain else "local resolution (Å)"
        fig.colorbar(image, ax=row[2], label=unit, fraction=0.046)
        row[3].hist(finite, bins=40, color="C3" if is_gain else "C0")
        row[3].set_xlabel(unit)
        row[3].set_ylabel("voxels in the mask")
        row[3].set_title(f"{label}: histogram", fontsize=8)
    _save(fig, path)


def plot_latent_space(
    path: str | Path,
    scores: np.ndarray,
    explained: np.ndarray,
    renders: np.ndarray,
    steps_sd: Sequence[float],
    label: str,
    along: str = "z",
) -> None:
    """PCA of the latent means (density) and the model rendered along PC1 and PC2.

    Parameters
    ----------
    scores
        `(P, 2)` every particle's latent mean on PC1 and PC2.
    explained
        `(L,)` fraction of the latent variance each principal component explains.
    renders
        `(2, S, D, D)` projections of the model (along the axis ``along``) at ``steps_sd``
        standard deviations along PC1 (row 0) and PC2 (row 1).
    """
    n_steps = renders.shape[1]
    fig = plt.figure(figsize=(3.2 + 1.9 * n_steps, 4.8), dpi=100)
    grid = fig.add_gridspec(2, n_steps + 2)
    ax = fig.add_subplot(grid[:, :2])
    cells = ax.hexbin(scores[:, 0], scores[:, 1], gridsize=35, cmap="viridis", mincnt=1, bins="log")
    fig.colorbar(cells, ax=ax, shrink=0.8, pad=0.02, label="particles per cell")
    ax.set(xlabel=f"PC1 ({100 * explained[0]:.0f}%)", ylabel=f"PC2 ({100 * explained[1]:.0f}%)")
    ax.set_title(f"{label}: latent means", fontsize=9)
    low, high = float(renders.min()), float(renders.max())
    for row in range(2):
        for column in range(n_steps):
            panel = fig.add_subplot(grid[row, column + 2])
            panel.imshow(renders[row, column], cmap="gray", vmin=low, vmax=high, origin="lower")
            panel.set_xticks([])
            panel.set_yticks([])
            panel.set_title(f"PC{row + 1} {steps_sd[column]:+.0f} sd (along {along})", fontsize=8)
    _save(fig, path)


def plot_on_model(
    path: str | Path, positions_a: np.ndarray, values_a: Mapping[str, np.ndarray]
) -> None:
    """Pseudo-atoms seen along z, y and x, one row per coloured quantity (Å).

    Parameters
    ----------
    positions_a
        `(N, 3)` consensus positions (Å, (x, y, z)).
    values_a
        Name -> `(N,)` a per-Gaussian quantity in Å (e.g. RMS motion, its error); one
        colour scale for all rows, so that they compare.
    """
    top = max(float(np.percentile(v, 99)) for v in values_a.values())
    top = max(top, 1e-3)
    fig, axes = plt.subplots(len(values_a), 3, figsize=(11, 3.5 * len(values_a)), dpi=90)
    axes = np.atleast_2d(axes)
    views = ((0, 1, "z"), (0, 2, "y"), (1, 2, "x"))
    for row, (name, values) in enumerate(values_a.items()):
        order = np.argsort(values)
        for ax, (first, second, along) in zip(axes[row], views, strict=True):
            points = ax.scatter(
                positions_a[order, first],
                positions_a[order, second],
                c=values[order],
                s=10,
                cmap="magma",
                vmin=0.0,
                vmax=top,
            )
            ax.set_aspect("equal")
            ax.set_title(f"{name} (Å), seen along {along}", fontsize=9)
            ax.set_xlabel("xyz"[first] + " (Å)")
            ax.set_ylabel("xyz"[second] + " (Å)")
        fig.colorbar(points, ax=axes[row, 2], label="Å", fraction=0.046)
    _save(fig, path)


# each central section of a `(z, y, x)` map and what its image's columns and rows are
SECTION_AXES = (("z", "x", "y"), ("y", "x", "z"), ("x", "y", "z"))


def map_sections_figure(
    maps: Mapping[str, np.ndarray], mask: np.ndarray | None, voxel_size_a: float
) -> Figure:
    """Central sections normal to z, y and x and the projection along z of each map.

    Parameters
    ----------
    maps
        Label -> `(D, D, D)` map (indexed z, y, x), one row each.
    mask
        `(D, D, D)` soft mask; its 0.5 contour is drawn on every section (``None``: none).
    voxel_size_a
        Voxel size (Å): the axes are in Å from the box's corner.

    One grey scale per row: the three sections share the map's 0.5 and 99.5 percentiles;
    the projection, a sum, has its own (its 0.5 and 99.5 percentiles).
    """
    extent_a = maps[next(iter(maps))].shape[0] * voxel_size_a
    extent = (0.0, extent_a, 0.0, extent_a)
    fig, axes = plt.subplots(len(maps), 4, figsize=(14, 3.7 * len(maps)), dpi=90, squeeze=False)
    mask_sections = central_slices(mask) if mask is not None else [None] * 3
    for row, (label, volume) in zip(axes, maps.items(), strict=True):
        low, high = (float(v) for v in np.percentile(volume, (0.5, 99.5)))
        for ax, section, outline, (normal, across, up) in zip(
            row[:3], central_slices(volume), mask_sections, SECTION_AXES, strict=True
        ):
            ax.imshow(section, cmap="gray", vmin=low, vmax=high, origin="lower", extent=extent)
            if outline is not None and outline.min() < 0.5 < outline.max():
                ax.contour(
                    outline,
                    levels=[0.5],
                    colors="C1",
                    linewidths=0.9,
                    origin="lower",
                    extent=extent,
                )
            ax.set_title(f"{label}: central section, {normal} = centre", fontsize=9)
            ax.set_xlabel(f"{across} (Å)")
            ax.set_ylabel(f"{up} (Å)")
        projection = volume.sum(axis=0)
        low, high = (float(v) for v in np.percentile(projection, (0.5, 99.5)))
        row[3].imshow(projection, cmap="gray", vmin=low, vmax=high, origin="lower", extent=extent)
        row[3].set_title(f"{label}: projection along z", fontsize=9)
        row[3].set_xlabel("x (Å)")
        row[3].set_ylabel("y (Å)")
    fig.suptitle(
        "Full maps (mean of the half maps): central sections with the mask's 0.5 contour "
        "(orange) and the projection along z",
        fontsize=11,
    )
    return fig


def plot_map_sections(
    path: str | Path,
    maps: Mapping[str, np.ndarray],
    mask: np.ndarray | None,
    voxel_size_a: float,
) -> None:
    """`map_sections_figure`, written as PNG."""
    _save(map_sections_figure(maps, mask, voxel_size_a), path)
