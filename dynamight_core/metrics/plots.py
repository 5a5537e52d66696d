"""Figures (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dynamight_core.io.files import atomic_path

if TYPE_CHECKING:
    import pandas as pd


def plot_fsc(
    path: str | Path, resolution_a: np.ndarray, curves: dict[str, np.ndarray], title: str
) -> None:
    """Plot FSC curves against spatial frequency (1/Å) with the 0.143 and 0.5 lines.

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
    """
    frequency = np.where(np.isfinite(resolution_a), 1.0 / resolution_a, 0.0)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, values in curves.items():
        ax.plot(frequency, values, label=label, linewidth=1.5)
    for level in (0.143, 0.5):
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlim(0, frequency.max())
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8)
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
