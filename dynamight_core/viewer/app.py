"""The napari front end of :class:`~dynamight_core.viewer.session.ExploreSession`.

A napari viewer in 3D shows the half set's model at one latent point as an iso-surface
(layer ``state``). A dock widget beside it plots the particles' PC1/PC2 scores (a
log-density hexbin) and offers:

- a click on the plot: the model at that point (the other components at the mean);
- "Draw polygon": a polygon on the plot selects the particles inside it (shown in orange);
- "Save selection": writes ``selected.star`` and ``complement.star`` (every other particle
  of the STAR file, the other half set's included) to the output folder;
- "Play PC1": the model from the 5th to the 95th percentile of PC1 as a 4-D layer
  (``PC1 trajectory``), which napari's slider plays.

napari, Qt and matplotlib's Qt backend are imported only inside the functions here: the
module itself imports without them, and nothing in the core package imports it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from dynamight_core.errors import InputError
from dynamight_core.viewer.session import ExploreSession

logger = logging.getLogger(__name__)

STATE_LAYER = "state"
TRAJECTORY_FRAMES = 20
ISO_FRACTION = 0.25
"""Iso-surface level as a fraction of the mean state's highest density."""


class ExploreApp:
    """The viewer's window and its latent-space panel, driven by a session.

    Built by :func:`launch`; the methods are what the panel's mouse clicks and buttons
    call, so that a script (or a test) can drive the viewer as a person would.

    Attributes
    ----------
    session
        The half set's model and latent space.
    out_dir
        Where "Save selection" writes ``selected.star`` and ``complement.star``.
    viewer
        The ``napari.Viewer``.
    point
        `(2,)` the PC1/PC2 point the state layer shows.
    mask
        `(P,)` the particles of the last polygon, or None before any.
    """

    def __init__(self, session: ExploreSession, out_dir: str | Path, viewer: Any) -> None:
        self.session = session
        self.out_dir = Path(out_dir)
        self.viewer = viewer
        self.scores = session.scores_2d()
        self.point = np.zeros(2)
        self.mask: np.ndarray | None = None
        volume = session.volume_at(self.point)
        top = float(volume.max())
        scale = (session.pixel_size_a,) * 3
        self.iso = ISO_FRACTION * top if top > 0 else 0.0
        self.contrast = (float(volume.min()), top if top > float(volume.min()) else 1.0)
        self.state = viewer.add_image(
            volume,
            name=STATE_LAYER,
            rendering="iso",
            iso_threshold=self.iso,
            contrast_limits=self.contrast,
            scale=scale,
            colormap="gray",
        )
        self.trajectory_layer: Any = None
        self._build_panel()

    def _build_panel(self) -> None:
        """The dock widget: the PC1/PC2 plot, the mode button, the actions and a status line."""
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure
        from matplotlib.widgets import PolygonSelector
        from qtpy.QtWidgets import (
            QHBoxLayout,
            QLabel,
            QPushButton,
            QVBoxLayout,
            QWidget,
        )

        figure = Figure(figsize=(4.0, 4.0), layout="constrained")
        self.canvas = FigureCanvasQTAgg(figure)
        axes = figure.add_subplot()
        x, y = self.scores[:, 0], self.scores[:, 1]
        axes.hexbin(x, y, gridsize=60, bins="log", mincnt=1, cmap="Blues", linewidths=0.0)
        # limits fixed now: clicks map to scores before the first draw, and the marker and
        # the selection drawn later do not rescale the plot
        axes.autoscale_view()
        axes.set_autoscale_on(False)
        explained = self.session.pca.explained
        axes.set_xlabel(f"PC1 ({100 * explained[0]:.0f}%)")
        second = f" ({100 * explained[1]:.0f}%)" if len(explained) > 1 else ""
        axes.set_ylabel(f"PC2{second}")
        axes.set_title(f"half set {self.session.half}: {len(x)} particles", fontsize=9)
        (self.selected_points,) = axes.plot([], [], ".", color="tab:orange", ms=2, alpha=0.6)
        (self.marker,) = axes.plot([0.0], [0.0], "+", color="tab:red", ms=14, mew=2)
        self.axes = axes
        # PolygonSelector calls onselect with the vertices alone (matplotlib's stub says two)
        onselect: Any = self._polygon_done
        self.selector = PolygonSelector(axes, onselect, useblit=False)
        self.selector.set_active(False)
        self.canvas.mpl_connect("button_press_event", self._on_click)

        self.polygon_button = QPushButton("Draw polygon")
        self.polygon_button.setCheckable(True)
        self.polygon_button.setToolTip(
            "On: clicks on the plot draw a polygon that selects particles (close it on the "
            "first vertex; Esc starts over). Off: a click shows the model at that point."
        )
        self.polygon_button.toggled.connect(self._set_polygon_mode)
        self.save_button = QPushButton("Save selection")
        self.save_button.clicked.connect(self.save_selection)
        if self.session.star_path is None:
            self.save_button.setEnabled(False)
            self.save_button.setToolTip("start the viewer with --star to save selections")
        self.play_button = QPushButton("Play PC1")
        self.play_button.clicked.connect(lambda: self.play(0))
        self.status = QLabel("click the plot to show the model at a point")
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        for button in (self.polygon_button, self.save_button, self.play_button):
            buttons.addWidget(button)
        layout = QVBoxLayout()
        layout.addWidget(self.canvas)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self.panel = QWidget()
        self.panel.setLayout(layout)
        self.viewer.window.add_dock_widget(self.panel, name="latent space", area="right")

    def _say(self, text: str) -> None:
        self.status.setText(text)
        logger.info("%s", text)

    def _set_polygon_mode(self, on: bool) -> None:
        self.selector.set_active(bool(on))
        if on:
            self._say("draw a polygon on the plot; close it on its first vertex")

    def _on_click(self, event: Any) -> None:
        """A click on the plot, outside polygon mode: show the model at that point."""
        if self.polygon_button.isChecked() or event.inaxes is not self.axes:
            return
        if event.xdata is None or event.ydata is None:
            return
        self.set_point(float(event.xdata), float(event.ydata))

    def _polygon_done(self, vertices: Any) -> None:
        """PolygonSelector's callback when a polygon is closed."""
        self.set_polygon(np.asarray(vertices, dtype=np.float64))

    def set_point(self, pc1: float, pc2: float) -> None:
        """Render the model at (``pc1``, ``pc2``) into the state layer and mark the point."""
        self.point = np.array([pc1, pc2], dtype=np.float64)
        self.state.data = self.session.volume_at(self.point)
        self.state.contrast_limits = self.contrast
        self.state.iso_threshold = self.iso
        self.state.visible = True
        if self.trajectory_layer is not None and self.trajectory_layer in self.viewer.layers:
            self.trajectory_layer.visible = False
        self.marker.set_data([pc1], [pc2])
        self.canvas.draw_idle()
        self._say(f"model at PC1 {pc1:.3g}, PC2 {pc2:.3g}")

    def set_polygon(self, vertices: np.ndarray) -> np.ndarray:
        """Select the particles inside a `(V, 2)` polygon on the plot; returns the mask."""
        if len(vertices) < 3:
            self._say("a polygon needs at least 3 vertices")
            return np.zeros(len(self.scores), dtype=bool)
        try:
            self.mask = self.session.select_polygon(vertices)
        except ValueError as err:  # a degenerate polygon
            self._say(f"no selection: {err}")
            return np.zeros(len(self.scores), dtype=bool)
        chosen = self.scores[self.mask]
        self.selected_points.set_data(chosen[:, 0], chosen[:, 1])
        self.canvas.draw_idle()
        self._say(f"{int(self.mask.sum())} of {len(self.mask)} particles in the polygon")
        return self.mask

    def save_selection(self) -> tuple[int, int] | None:
        """Write the polygon's particles and the complement as STAR files in ``out_dir``."""
        if self.mask is None:
            self._say("draw a polygon first (Draw polygon)")
            return None
        selected = self.out_dir / "selected.star"
        complement = self.out_dir / "complement.star"
        try:
            counts = self.session.save_selection(self.mask, selected, complement)
        except InputError as err:
            self._say(f"not saved: {err}")
            return None
        self._say(
            f"wrote {counts[0]} particles to {selected} and {counts[1]} "
            f"(every other particle, both half sets) to {complement}"
        )
        return counts

    def play(self, component: int = 0, n_frames: int = TRAJECTORY_FRAMES) -> None:
        """Show the trajectory along a component (0 = PC1) as a 4-D layer with a slider."""
        frames = self.session.trajectory(component, n_frames)
        name = f"PC{component + 1} trajectory"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.trajectory_layer = self.viewer.add_image(
            frames,
            name=name,
            rendering="iso",
            iso_threshold=self.iso,
            contrast_limits=self.contrast,
            scale=(1.0,) + (self.session.pixel_size_a,) * 3,
            colormap="gray",
        )
        self.state.visible = False
        self.viewer.dims.set_current_step(0, 0)
        self._say(
            f"{name}: {n_frames} maps from the 5th to the 95th percentile; "
            "press play on the slider below the view (a click on the plot shows the state again)"
        )


def launch(session: ExploreSession, out_dir: str | Path, block: bool = True) -> ExploreApp:
    """Open the viewer on ``session``; with ``block`` run napari's event loop until it closes.

    Parameters
    ----------
    session
        The half set's model and latent space.
    out_dir
        Where "Save selection" writes ``selected.star`` and ``complement.star``.
    block
        Run the event loop (``napari.run()``) and return when the window is closed; False
        returns at once (scripts, tests).

    Returns
    -------
    ExploreApp
        The viewer and its panel.
    """
    import napari

    viewer = napari.Viewer(title=f"DynaMight half set {session.half}", ndisplay=3)
    app = ExploreApp(session, out_dir, viewer)
    viewer.layers.selection.active = app.state
    if block:
        napari.run()
    return app
