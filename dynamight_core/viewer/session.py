"""What the viewer shows and does, without any GUI: one half set's model and latent space.

An :class:`ExploreSession` holds a half set's trained model, its particles' latent means
and their principal components. The napari front end (:mod:`.app`) only draws what the
session computes: the PC1/PC2 scatter (:meth:`ExploreSession.scores_2d`), the model at a
point of that plane (:meth:`ExploreSession.volume_at`), a trajectory along one component
(:meth:`ExploreSession.trajectory`) and a polygon selection written as RELION STAR
subsets (:meth:`ExploreSession.select_polygon`, :meth:`ExploreSession.save_selection`).
No napari or Qt import here: the session is tested headless.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dynamight_core.data.latent_space import LatentPca, latent_pca, latents_at_percentiles
from dynamight_core.data.latents import (
    check_latents_match_model,
    check_rows_match_star,
    mean_columns,
    read_latent_means,
)
from dynamight_core.errors import InputError
from dynamight_core.explore.states import render_states
from dynamight_core.io.star import particle_image_names
from dynamight_core.models.decoders import decoder_latent_dim
from dynamight_core.models.deformation import DeformationModel
from dynamight_core.training.half_set_vae import load_half_set_vae


class ExploreSession:
    """One half set's trained model and latent space, as the viewer explores them.

    Parameters
    ----------
    model_path
        The half set's trained VAE (``train-vae``'s ``model.pt``).
    latents_path
        The half set's latent table (``train-vae``'s ``latents.csv``): columns ``row``
        (0-based row of the particle in the STAR file), ``rlnImageName`` (optional, checked
        against the STAR file) and the latent means ``mu_0 .. mu_{L-1}``.
    star_path
        The particle STAR file the model was trained on; needed only to save selections.
    device
        Where the model renders (CPU by default).

    Attributes
    ----------
    model
        The half set's deformation model (gradients off).
    half
        The half set (1 or 2).
    rows
        `(P,)` STAR rows of the half set's particles, in the table's order.
    latents
        `(P, L)` latent means, in the same order.
    pca
        Principal components of ``latents``.
    star_path
        The STAR file, or None.

    Raises
    ------
    InputError
        When the table has fewer than 3 particles, no ``row`` or ``mu_*`` columns, latents
        that are not finite or of another dimension than the model's, or rows or image
        names that do not match ``star_path``.
    """

    def __init__(
        self,
        model_path: str | Path,
        latents_path: str | Path,
        star_path: str | Path | None = None,
        device: torch.device | None = None,
    ) -> None:
        vae = load_half_set_vae(model_path, device)
        self.model: DeformationModel = vae.model.requires_grad_(False).eval()
        self.half = vae.half
        table, self.latents = read_latent_means(latents_path)
        check_latents_match_model(latents_path, table, model_path, vae)
        columns = mean_columns(table)
        latent_dim = decoder_latent_dim(self.model.decoder)
        if len(columns) != latent_dim:
            raise InputError(
                latents_path,
                "mu_*",
                f"{latent_dim} latent means (the model's latent dimension)",
                f"{len(columns)}",
                "Are the model and the latent table of the same training?",
            )
        self.rows = table["row"].to_numpy(dtype=np.int64)
        self.latents_path = Path(latents_path)
        self.pca: LatentPca = latent_pca(self.latents)
        self.star_path = Path(star_path) if star_path is not None else None
        self._star_rows = 0
        if self.star_path is not None:
            self._star_rows = self._check_star(self.star_path, table)

    def _check_star(self, star: Path, table: pd.DataFrame) -> int:
        """The number of particle rows of ``star``, checked against the latent table."""
        names = particle_image_names(star)
        check_rows_match_star(self.latents_path, table, names, star)
        return len(names)

    @property
    def latent_dim(self) -> int:
        """Dimension L of the latent space."""
        return int(self.latents.shape[1])

    @property
    def pixel_size_a(self) -> float:
        """Voxel size (Å) of the rendered maps."""
        return float(self.model.consensus.pixel_size_a)

    def scores_2d(self) -> np.ndarray:
        """`(P, 2)` each particle's scores on PC1 and PC2 (PC2 zero in a 1-D latent space)."""
        scores = np.zeros((len(self.latents), 2))
        k = min(2, self.latent_dim)
        scores[:, :k] = self.pca.scores[:, :k]
        return scores

    def latent_at(self, score_xy: np.ndarray) -> np.ndarray:
        """`(L,)` the latent at a point (PC1, PC2 scores) of the plane, other PCs at the mean."""
        point = np.asarray(score_xy, dtype=np.float64).reshape(-1)
        if point.shape != (2,):
            raise ValueError(f"a point (PC1, PC2) of two scores, found shape {point.shape}")
        return self.pca.to_latent(point[None, : min(2, self.latent_dim)])[0]

    def volume_at(self, score_xy: np.ndarray) -> np.ndarray:
        """`(D, D, D)` float32 map (z, y, x) of the model at a point (PC1, PC2 scores).

        The other principal components stay at the mean; ``(0, 0)`` is the mean latent.
        The map is on the consensus grid (box and voxel size of the particles).
        """
        return render_states(self.model, self.latent_at(score_xy)[None])[0]

    def trajectory(
        self, component: int, n_frames: int, low_pct: float = 5.0, high_pct: float = 95.0
    ) -> np.ndarray:
        """`(S, D, D, D)` maps along one principal component, S = ``n_frames``.

        Parameters
        ----------
        component
            0-based principal component (0 = PC1).
        n_frames
            Number of maps, at least 2.
        low_pct, high_pct
            The path runs from this low to this high percentile (0-100) of the particles'
            scores on ``component``; the other components stay at the mean.
        """
        if not 0 <= component < self.latent_dim:
            raise ValueError(f"component {component} (0-based) of {self.latent_dim} components")
        if n_frames < 2:
            raise ValueError(f"a trajectory of at least 2 frames, found {n_frames}")
        if not 0.0 <= low_pct < high_pct <= 100.0:
            raise ValueError(f"percentiles 0 <= low < high <= 100, found {low_pct}, {high_pct}")
        percentiles = np.linspace(low_pct, high_pct, n_frames).tolist()
        return render_states(self.model, latents_at_percentiles(self.pca, component, percentiles))

    def select_polygon(self, vertices: np.ndarray) -> np.ndarray:
        """`(P,)` True for the half set's particles whose (PC1, PC2) lie inside the polygon.

        ``vertices`` is `(V, 2)`, V >= 3, in PC1/PC2 scores (the polygon is closed).
        """
        from dynamight_core.data.selection import in_polygon

        return np.asarray(in_polygon(self.scores_2d(), np.asarray(vertices, np.float64)), bool)

    def save_selection(
        self, mask: np.ndarray, out_selected: str | Path, out_complement: str | Path
    ) -> tuple[int, int]:
        """Write the selected particles, and all the others, as two RELION STAR subsets.

        The selected file holds the half set's particles where ``mask`` is True. The
        complement holds every other particle of the whole STAR file: the half set's
        unselected particles *and all particles of the other half set* (which have no
        latents in this half set's table). Both are the STAR file's own text with rows left
        out (:func:`dynamight_core.io.star_subset.write_star_split`).

        Parameters
        ----------
        mask
            `(P,)` boolean over the half set's particles, in the latent table's order
            (e.g. from :meth:`select_polygon`).
        out_selected, out_complement
            The two output STAR files.

        Returns
        -------
        tuple[int, int]
            Particles written to ``out_selected`` and to ``out_complement``.

        Raises
        ------
        InputError
            When the session has no STAR file, or ``mask`` is not `(P,)` boolean.
        """
        from dynamight_core.io.star_subset import write_star_split

        if self.star_path is None:
            raise InputError(
                "explore view",
                "--star",
                "the particle STAR file the latents were trained on",
                "none given",
                "Start the viewer with --star to save selections",
            )
        values = np.asarray(mask)
        if values.dtype != np.bool_ or values.shape != self.rows.shape:
            raise InputError(
                "selection",
                "mask",
                f"{len(self.rows)} booleans (one per particle of the half set)",
                f"dtype {values.dtype}, shape {values.shape}",
            )
        keep = np.zeros(self._star_rows, dtype=bool)
        keep[self.rows[values]] = True
        return write_star_split(self.star_path, keep, out_selected, out_complement)
