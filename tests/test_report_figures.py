"""The report's figures and page parts, on synthetic inputs (fast; no workflow run)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Annotation

from dynamight_core.metrics.plots import FSC_THRESHOLD, crossing_frequency, plot_fsc
from dynamight_core.report.figures import map_sections_figure, plot_map_sections
from dynamight_core.report.html import Page


def _blob(box: int, centre: tuple[float, float, float]) -> np.ndarray:
    z, y, x = np.mgrid[:box, :box, :box].astype(float)
    return np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / 8.0)


def test_map_sections_show_three_sections_and_a_projection_of_each_map() -> None:
    box, voxel = 24, 1.5
    maps = {"consensus": _blob(box, (12, 12, 12)), "deformed": _blob(box, (12, 10, 14))}
    mask = (_blob(box, (12, 12, 12)) > 0.05).astype(float)
    fig = map_sections_figure(maps, mask, voxel)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2 * 4
    titles = [ax.get_title() for ax in panels]
    for label in maps:
        for normal in "zyx":
            assert f"{label}: central section, {normal} = centre" in titles
        assert f"{label}: projection along z" in titles
    for ax in panels:
        assert ax.get_xlabel().endswith("(Å)") and ax.get_ylabel().endswith("(Å)")
        # the axes run over the box in Å
        assert ax.images[0].get_extent() == pytest.approx([0, box * voxel, 0, box * voxel])
    sections = [ax for ax in panels if "section" in ax.get_title()]
    assert all(ax.collections for ax in sections), "a section without the mask's outline"
    # one grey scale for the three sections of a row
    for label in maps:
        limits = {ax.images[0].get_clim() for ax in sections if ax.get_title().startswith(label)}
        assert len(limits) == 1
    assert fig.get_suptitle()
    plt.close(fig)


def test_map_sections_figure_is_written_without_a_mask(tmp_path: Path) -> None:
    path = tmp_path / "maps.png"
    plot_map_sections(path, {"consensus": _blob(16, (8, 8, 8))}, None, 2.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fsc_crossing_is_interpolated_at_0143() -> None:
    frequency = np.linspace(0.0, 0.25, 26)
    fsc = 1.0 - frequency / 0.2  # crosses 0.143 at 0.2 * 0.857 1/Å
    expected = 0.2 * (1 - FSC_THRESHOLD)
    assert crossing_frequency(frequency, fsc) == pytest.approx(expected, rel=1e-9)
    assert crossing_frequency(frequency, np.ones(26)) is None
    assert crossing_frequency(frequency, np.full(26, np.nan)) is None


def _plotted_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scales: dict[str, float], **options: Any
) -> Figure:
    """The figure plot_fsc makes of straight lines ``1 - f / scale`` (26 shells, 100 Å box)."""
    shells = np.arange(26)
    resolution = np.divide(100.0, shells, out=np.full(26, np.inf), where=shells > 0)
    frequency = np.where(np.isfinite(resolution), 1.0 / resolution, 0.0)
    curves = {name: 1.0 - frequency / scale for name, scale in scales.items()}
    captured: list[Figure] = []
    monkeypatch.setattr(plt, "close", captured.append)  # keep the figure to look at
    plot_fsc(tmp_path / "fsc.png", resolution, curves, "test", **options)
    monkeypatch.undo()
    return captured[0]


def test_fsc_plot_labels_each_crossing_with_its_resolution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fig = _plotted_lines(tmp_path, monkeypatch, {"a": 0.2, "b": 0.1})
    ax = fig.axes[0]
    labels = {
        t.get_text(): t.xy
        for t in ax.texts
        if isinstance(t, Annotation) and t.get_gid() == "crossing-label"
    }
    for scale in (0.2, 0.1):
        crossing = scale * (1 - FSC_THRESHOLD)
        text = f"{1 / crossing:.2f} Å"
        assert text in labels
        assert labels[text] == pytest.approx((crossing, FSC_THRESHOLD))
    assert any(t.get_text() == "FSC = 0.143" for t in ax.texts)
    assert ax.get_xlabel() == "spatial frequency (1/Å)"
    top = fig.axes[1]
    assert top.get_xlabel() == "resolution (Å)"
    ticks = [t.get_text() for t in top.get_xticklabels()]
    assert ticks[0] == "∞" and "10" in ticks  # 0.1 1/Å is 10 Å
    plt.close(fig)


def test_page_has_contents_linking_every_section_and_folds_raw_text() -> None:
    page = Page("title")
    page.heading("Is the map better?")
    page.heading("Local resolution", 3)
    page.heading("Is the map better?")
    page.collapsed("Configuration", '{"a": 1}')
    text = page.render()
    ids = re.findall(r'<h[23] id="([^"]+)"', text)
    assert ids == ["is-the-map-better", "local-resolution", "is-the-map-better-2"]
    links = re.findall(r'<a href="#([^"]+)"', text)
    assert links == ids
    assert text.index('<nav class="toc">') < text.index("<h2")
    assert (
        "<details><summary>Configuration</summary><pre>{&quot;a&quot;: 1}</pre></details>" in text
    )


def test_fsc_plot_prints_only_the_marked_crossings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scales = {"halves": 0.2, "full vs reference": 0.1}
    fig = _plotted_lines(tmp_path, monkeypatch, scales, marked=["halves"])
    ax = fig.axes[0]
    printed = [t.get_text() for t in ax.texts if t.get_gid() == "crossing-label"]
    assert printed == [f"{1 / (0.2 * (1 - FSC_THRESHOLD)):.2f} Å"]
    plt.close(fig)


def test_fsc_labels_stay_inside_near_nyquist_and_latent_density_has_a_colour_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crossing near Nyquist is labelled to its left, the 0.143 label sits at the
    low-frequency end (clear of the crossings), and the latent hexbin has a colour bar."""
    from dynamight_core.report.figures import plot_latent_space

    fig = _plotted_lines(tmp_path, monkeypatch, {"near_nyquist": 0.29, "mid": 0.1})
    ax = fig.axes[0]
    align = {
        t.get_text(): t.get_horizontalalignment()
        for t in ax.texts
        if isinstance(t, Annotation) and t.get_gid() == "crossing-label"
    }
    near = f"{1 / (0.29 * (1 - FSC_THRESHOLD)):.2f} Å"
    mid = f"{1 / (0.1 * (1 - FSC_THRESHOLD)):.2f} Å"
    assert align == {near: "right", mid: "left"}
    threshold = next(t for t in ax.texts if t.get_text() == "FSC = 0.143")
    assert threshold.get_position()[0] < 0.1 and threshold.get_horizontalalignment() == "left"
    plt.close(fig)
    captured: list[Figure] = []
    monkeypatch.setattr(plt, "close", captured.append)
    scores = np.random.default_rng(0).standard_normal((500, 2))
    renders = np.zeros((2, 5, 16, 16))
    plot_latent_space(
        tmp_path / "latent.png", scores, np.array([0.6, 0.3]), renders, [-2, -1, 0, 1, 2], "h1"
    )
    monkeypatch.undo()
    labels = [axes.get_ylabel() for axes in captured[0].axes]
    assert "particles per cell" in labels
    plt.close(captured[0])
