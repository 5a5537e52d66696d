"""A half set's latent space: principal components, clusters and neighbourhoods.

Shared by the report (PCA figures), ``explore`` (latent points, movies, selections) and
the optional viewer. Plain numpy on `(P, L)` arrays of latent means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.cluster.vq import kmeans2


@dataclass(frozen=True)
class LatentPca:
    """Principal components of a half set's latent means.

    Attributes
    ----------
    mean
        `(L,)` mean latent.
    axes
        `(L, L)` principal directions, one per row, by decreasing variance.
    sd
        `(L,)` standard deviation of the latents along each direction.
    explained
        `(L,)` fraction of the total variance along each direction.
    scores
        `(P, L)` each particle's coordinates on the directions.
    """

    mean: np.ndarray
    axes: np.ndarray
    sd: np.ndarray
    explained: np.ndarray
    scores: np.ndarray

    def project(self, latents: np.ndarray) -> np.ndarray:
        """`(S, L)` scores of `(S, L)` latent points on the principal directions."""
        return (np.asarray(latents, dtype=np.float64) - self.mean) @ self.axes.T

    def to_latent(self, scores: np.ndarray) -> np.ndarray:
        """`(S, L)` latents of `(S, K)` scores on the first K directions (the rest at 0)."""
        values = np.atleast_2d(np.asarray(scores, dtype=np.float64))
        return self.mean[None] + values @ self.axes[: values.shape[1]]

    def with_pc1_sign(self, sign: int) -> LatentPca:
        """The same PCA with PC1 (its direction and every particle's score) times ``sign``."""
        flip = np.ones(len(self.sd))
        flip[0] = sign
        return replace(self, axes=self.axes * flip[:, None], scores=self.scores * flip[None])


def latent_pca(latents: np.ndarray) -> LatentPca:
    """PCA (by SVD of the centred matrix) of `(P, L)` latent means, P >= 2."""
    values = np.asarray(latents, dtype=np.float64)
    mean = values.mean(axis=0)
    centred = values - mean
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2 / (len(values) - 1)
    total = max(float(variance.sum()), 1e-30)
    # a deterministic sign: each direction's largest component positive
    signs = np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])
    axes = axes * signs[:, None]
    return LatentPca(mean, axes, np.sqrt(variance), variance / total, centred @ axes.T)


def latents_along(pca: LatentPca, component: int, steps_sd: Sequence[float]) -> np.ndarray:
    """`(S, L)` latents at ``steps_sd`` standard deviations along one principal direction."""
    offsets = np.asarray(steps_sd)[:, None] * pca.sd[component] * pca.axes[component][None]
    return pca.mean[None] + offsets


def latents_at_percentiles(
    pca: LatentPca, component: int, percentiles: Sequence[float]
) -> np.ndarray:
    """`(S, L)` latents at the particles' ``percentiles`` (0-100) of one component's scores.

    The other components stay at the mean: a path through the populated part of the
    latent space, robust to a few outlying particles (unlike steps in standard deviations).
    """
    if not 0 <= component < len(pca.sd):
        raise ValueError(f"component {component + 1} of a {len(pca.sd)}-dimensional latent space")
    scores = np.percentile(pca.scores[:, component], np.asarray(percentiles, dtype=np.float64))
    return pca.mean[None] + scores[:, None] * pca.axes[component][None]


def latent_path(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """`(steps, L)` latents evenly spaced from ``start`` to ``end`` (both included)."""
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    return (1.0 - weights) * np.asarray(start, np.float64)[None] + weights * np.asarray(
        end, np.float64
    )[None]


def latent_clusters(
    latents: np.ndarray, n_clusters: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """k-means of `(P, L)` latents: `(K, L)` centres and `(P,)` labels 0..K-1.

    Clusters are numbered by their centre's score on the first principal component, so the
    numbering follows the main motion and does not depend on the clustering's internal order.
    Empty clusters are dropped (K can come out smaller than ``n_clusters``).
    """
    values = np.asarray(latents, dtype=np.float64)
    count = min(n_clusters, len(values))
    if count <= 1:
        return values.mean(axis=0, keepdims=True), np.zeros(len(values), dtype=np.int64)
    centres, labels = kmeans2(values, count, minit="++", seed=seed)
    present = np.unique(labels)
    pca = latent_pca(values)
    keys = (centres[present] - pca.mean) @ pca.axes[0]
    order = present[np.argsort(keys, kind="stable")]
    renumber = np.full(count, -1, dtype=np.int64)
    renumber[order] = np.arange(len(order))
    return centres[order], renumber[labels]


def nearest(latents: np.ndarray, point: np.ndarray, count: int) -> np.ndarray:
    """Indices (into `(P, L)` ``latents``) of the ``count`` particles nearest ``point``, sorted."""
    distances = np.linalg.norm(np.asarray(latents, np.float64) - np.asarray(point)[None], axis=1)
    count = min(count, len(distances))
    return np.sort(np.argpartition(distances, count - 1)[:count])
