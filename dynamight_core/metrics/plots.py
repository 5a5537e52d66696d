"""Figures (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dynamight_core.io.files import atomic_path

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes


FSC_THRESHOLD = 0.143


def crossing_frequency(
    frequency: np.ndarray, fsc: np.ndarray, level: float = FSC_THRESHOLD
) -> float | None:
    """Spatial frequency (1/Å) where ``fsc`` first falls below ``level`` after shell 0.

    Linear interpolation between the last shell above and the first below, as
    `FSCResult.resolution_at` does; ``None`` when the curve holds NaN, never falls below
    ``level``, or is already below it at shell 1.
    """
    if not np.isfinite(fsc).all():
        return None
    below = np.flatnonzero(fsc[1:] < level)
    if below.size == 0:
        return None
    k = int(below[0]) + 1
    upper, lower = float(fsc[k - 1]), float(fsc[k])
    fraction = (upper - level) / max(upper - lower, 1e-12)
    crossing = float(frequency[k - 1] + fraction * (frequency[k] - frequency[k - 1]))
    return crossing if crossing > 0 else None


def resolution_axis(ax: Axes) -> Axes:
    """A top axis labelling the bottom axis' spatial frequencies as resolution (Å)."""
    top = ax.twiny()
    top.set_xlim(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    top.set_xticks(ticks)
    top.set_xticklabels(["∞" if t <= 0 else f"{1.0 / t:.3g}" for t in ticks])
    top.set_xlabel("resolution (Å)")
    return top


def mark_threshold(ax: Axes, frequency: np.ndarray, curves: dict[str, np.ndarray]) -> None:
    """The labelled FSC = 0.143 line and each curve's resolution where it crosses it.

    Colours follow the lines already drawn on ``ax`` (in the order of ``curves``).
    """
    ax.axhline(FSC_THRESHOLD, color="grey", linestyle="--", linewidth=1)
    ax.text(  # at the low-frequency end, clear of the crossings
        0.01,
        FSC_THRESHOLD + 0.015,
        "FSC = 0.143",
        transform=ax.get_yaxis_transform(),
        ha="left",
        va="bottom",
        fontsize=8,
        color="dimgrey",
    )
    lines = ax.get_lines()
    for index, (label, values) in enumerate(curves.items()):
        crossing = crossing_frequency(frequency, values)
        if crossing is None:
            continue
        colour = next((line.get_color() for line in lines if line.get_label() == label), "k")
        ax.plot([crossing], [FSC_THRESHOLD], "o", color=colour, markersize=5, gid="crossing")
        # near Nyquist the label goes to the point's left, inside the axes
        left = crossing > 0.75 * float(np.max(frequency))
        ax.annotate(
            f"{1.0 / crossing:.2f} Å",
            (crossing, FSC_THRESHOLD),
            xytext=(-4 if left else 4, 6 + 11 * index),
            textcoords="offset points",
            ha="right" if left else "left",
            bbox={
                "boxstyle": "round,pad=0.1",
                "facecolor": "white",
                "edgecolor": "none",
                "alpha": 0.8,
            },
            fontsize=8,
            color=colour,
            gid="crossing-label",
        )


def plot_fsc(
    path: str | Path,
    resolution_a: np.ndarray,
    curves: dict[str, np.ndarray],
    title: str,
    marked: Collection[str] | None = None,
) -> None:
    """Plot FSC curves against spatial frequency (1/Å) with the 0.143 and 0.5 lines.

    The 0.143 line is labelled, each curve's resolution printed where it crosses it, and a
    top axis gives the resolution (Å).

    Parameters
    ----------
    path
        PNG file to write (atomically).
    resolution_a
        `(S,)` resolution of each shell in Å (``inf`` for shell 0).
    curves
        Label -> `(S,)` FSC values.
    title
        Figure title.
    marked
        The curves whose 0.143 crossing is printed: those between half maps (``None``: all);
        a map against a reference is read at 0.5, not 0.143.
    """
    frequency = np.where(np.isfinite(resolution_a), 1.0 / resolution_a, 0.0)
    fig, ax = plt.subplots(figsize=(8.0, 5.0), dpi=120)
    for label, values in curves.items():
        ax.plot(frequency, values, label=label, linewidth=1.5)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlim(0, frequency.max())
    mark_threshold(
        ax, frequency, {k: v for k, v in curves.items() if marked is None or k in marked}
    )
    # on the top axis, so that the title sits above its resolution labels
    resolution_axis(ax).set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_training(path: str | Path, history: pd.DataFrame, title: str) -> None:
    """Training curves: data term (training and validation) and the other loss terms.

    Parameters
    ----------
    path
        PNG file to write (atomically).
    history
        A pandas DataFrame with columns ``epoch``, ``data``, ``validation``, ``kl`` and
        ``deformation``.
    title
        Figure title.
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.6), dpi=120, sharex=True)
    top.plot(history["epoch"], history["data"], label="training data term")
    top.plot(
        history["epoch"],
        history["validation"],
        label="validation data term",
    )
    top.set_ylabel("whitened residual")
    top.legend(fontsize=8)
    bottom.semilogy(history["epoch"], history["kl"], label="KL (weighted)")
    bottom.semilogy(
        history["epoch"],
        history["deformation"],
        label="deformation penalty",
    )
    bottom.set_xlabel("epoch")
    bottom.legend(fontsize=8)
    top.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
