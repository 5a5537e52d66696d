"""How far apart the conformations of two maps are: a smooth deformable registration.

Two half maps of one conformation differ by noise; two half maps of two conformations also
differ by a displacement of their density. :func:`conformation_difference` estimates that
displacement: both maps are low-passed (``resolution_a``, where the half maps' SNR is
high, so that noise barely moves the estimate) and resampled to
:data:`VOXELS_PER_RESOLUTION` voxels per that resolution (cost and memory independent of
the box), then a displacement field on a coarse
grid of control points (trilinear between them: smooth by construction) is fitted so
that the second map, sampled at ``x + u(x)``, matches the first inside the mask (least
squares, L-BFGS). The field's rigid part (a translation and a small rotation, least
squares over the density) is removed; what remains, weighted by the first map's density
inside the mask, is reported as an RMS in Å. Two independent half maps of the same state
give a small value (their noise floor); the consensus half maps, which show the same
average by construction, measure that floor on the data itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as functional

from dynamight_core.geometry.fourier import rfft_frequencies_3d

# the defaults: low-pass to 10 Å, control points 8 per axis, iterations of L-BFGS
LOWPASS_A = 10.0
CONTROL_NODES = 8
ITERATIONS = 60
# penalty on the field (per voxel^2, relative to the data term): keeps it bounded where
# the maps carry no density
FIELD_PENALTY = 1e-4
# the low-passed maps are resampled to this many voxels per low-pass resolution (at most
# the original grid): the registration's cost and memory then do not grow with the box
VOXELS_PER_RESOLUTION = 3.0


@dataclass(frozen=True)
class ConformationDifference:
    """The displacement that takes one map's density to the other's.

    Attributes
    ----------
    rms_a
        RMS displacement (Å) over the density after removing the rigid part.
    p95_a
        95th percentile of the displacement (Å) over the density, rigid part removed.
    rigid_rms_a
        RMS (Å) of the rigid part alone.
    residual_before, residual_after
        Mean squared difference of the normalised low-passed maps in the mask, before
        and after the registration.
    """

    rms_a: float
    p95_a: float
    rigid_rms_a: float
    residual_before: float
    residual_after: float

    def record(self) -> dict[str, float]:
        """Rounded JSON fields."""
        return {key: round(float(value), 4) for key, value in self.__dict__.items()}


def lowpassed(volume: np.ndarray, pixel_size_a: float, resolution_a: float) -> torch.Tensor:
    """`(D, D, D)` ``volume`` times a Gaussian in frequency that is 1/2 at ``resolution_a``."""
    data = torch.as_tensor(np.asarray(volume), dtype=torch.float64)
    box = data.shape[0]
    kz, ky, kx = rfft_frequencies_3d(box, dtype=torch.float64)
    squared = (kz**2 + ky**2 + kx**2) / (box * pixel_size_a) ** 2  # 1/Å^2
    width = math.sqrt(math.log(2.0)) * resolution_a  # exp(-(f w)^2) = 1/2 at f = 1/res
    gain = torch.exp(-squared * width**2)
    return torch.fft.irfftn(torch.fft.rfftn(data) * gain, s=data.shape)


def binned(volume: torch.Tensor, box_px: int) -> torch.Tensor:
    """`(d, d, d)` ``volume`` Fourier-cropped to ``box_px`` voxels (``d <= D``, same extent)."""
    size = volume.shape[0]
    if box_px >= size:
        return volume
    spectrum = torch.fft.fftshift(torch.fft.fftn(volume))
    start = size // 2 - box_px // 2
    window = slice(start, start + box_px)
    cropped = torch.fft.ifftshift(spectrum[window, window, window])
    return torch.fft.ifftn(cropped).real * (box_px / size) ** 3


def _normalised(volume: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    inside = mask > 0
    values = volume[inside]
    return (volume - values.mean()) / values.std().clamp(min=1e-30)


def _rigid_part(points: torch.Tensor, field: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`(P, 3)` the least-squares translation + small rotation (``t + w x p``) of ``field``."""
    centre = (weights[:, None] * points).sum(0) / weights.sum()
    p = points - centre
    zero = torch.zeros_like(p[:, 0])
    # t + omega x p = [I | -[p]x] (t, omega)
    skew = torch.stack(
        [
            torch.stack([zero, p[:, 2], -p[:, 1]], dim=1),
            torch.stack([-p[:, 2], zero, p[:, 0]], dim=1),
            torch.stack([p[:, 1], -p[:, 0], zero], dim=1),
        ],
        dim=1,
    )  # (P, 3, 3): rows x, y, z of -[p]x
    eye = torch.eye(3, dtype=points.dtype).expand(len(points), 3, 3)
    design = torch.cat([eye, skew], dim=2)  # (P, 3, 6)
    root = weights.sqrt()[:, None, None]
    a = (root * design).reshape(-1, 6)
    b = (root[:, :, 0] * field).reshape(-1)
    solution = torch.linalg.lstsq(a, b[:, None]).solution[:, 0]
    return (design @ solution).reshape(-1, 3)


def conformation_difference(
    first: np.ndarray,
    second: np.ndarray,
    mask: np.ndarray,
    pixel_size_a: float,
    resolution_a: float = LOWPASS_A,
    nodes: int = CONTROL_NODES,
    iterations: int = ITERATIONS,
) -> ConformationDifference:
    """The smooth displacement (Å) between two maps' conformations (module docstring).

    Parameters
    ----------
    first, second
        `(D, D, D)` maps on one grid (e.g. the two half maps).
    mask
        `(D, D, D)` soft mask in [0, 1] (the molecule).
    pixel_size_a
        Voxel size (Å).
    resolution_a
        Both maps are low-passed to this resolution first (Å).
    nodes
        Control points per axis of the displacement field.
    iterations
        L-BFGS iterations.
    """
    full = np.asarray(first).shape[0]
    extent_a = full * pixel_size_a
    box = min(full, 2 * math.ceil(extent_a * VOXELS_PER_RESOLUTION / resolution_a / 2))
    voxel_a = extent_a / box  # the registration's voxel
    weight = torch.as_tensor(np.asarray(mask), dtype=torch.float64)
    if box < full:
        weight = functional.interpolate(
            weight[None, None], size=(box, box, box), mode="trilinear", align_corners=False
        )[0, 0]
    weight = weight.clamp(0.0, 1.0)
    fixed, moving = (
        _normalised(binned(lowpassed(volume, pixel_size_a, resolution_a), box), weight)
        for volume in (first, second)
    )
    axis = torch.linspace(-1.0, 1.0, box, dtype=torch.float64)
    z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
    base = torch.stack([x, y, z], dim=-1)[None]  # (1, D, D, D, 3), grid_sample's (x, y, z)
    control = torch.zeros(1, 3, nodes, nodes, nodes, dtype=torch.float64, requires_grad=True)

    def displacement() -> torch.Tensor:  # (D, D, D, 3) in grid units (2 / (D - 1) per voxel)
        size = (box, box, box)
        upsampled = functional.interpolate(control, size=size, mode="trilinear", align_corners=True)
        return upsampled[0].permute(1, 2, 3, 0)

    def residual() -> torch.Tensor:
        grid = base + displacement()[None]
        warped = functional.grid_sample(
            moving[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )[0, 0]
        return (weight * (warped - fixed) ** 2).sum() / weight.sum()

    optimiser = torch.optim.LBFGS(
        [control], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe"
    )
    voxel = 2.0 / (box - 1)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = residual() + FIELD_PENALTY * (control / voxel).pow(2).mean()
        loss.backward()
        return loss

    with torch.no_grad():
        before = float(residual())
    optimiser.step(closure)
    with torch.no_grad():
        after = float(residual())
        field_a = displacement().reshape(-1, 3) / voxel * voxel_a
        density = (weight * fixed.clamp(min=0.0)).reshape(-1)
        inside = density > 1e-6 * float(density.max())
        points = (base[0].reshape(-1, 3) / voxel * voxel_a)[inside]
        rigid = _rigid_part(points, field_a[inside], density[inside])
        rest = (field_a[inside] - rigid).norm(dim=1)
        share = density[inside] / density[inside].sum()
        rms = float((share * rest**2).sum().sqrt())
        rigid_rms = float((share * rigid.norm(dim=1) ** 2).sum().sqrt())
        order = torch.argsort(rest)
        cumulative = torch.cumsum(share[order], dim=0)
        p95 = float(
            rest[order][
                torch.searchsorted(cumulative, torch.tensor(0.95, dtype=torch.float64)).clamp(
                    max=len(rest) - 1
                )
            ]
        )
    return ConformationDifference(rms, p95, rigid_rms, before, after)
