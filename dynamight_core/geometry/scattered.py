"""Values known at scattered points (pseudo-atoms) carried to other points."""

from __future__ import annotations

import torch

RIDGE = 0.1  # slope penalty of the local linear fit, relative to the kernel's weight


def kernel_interpolate(
    points: torch.Tensor, sites: torch.Tensor, values: torch.Tensor, width: float
) -> torch.Tensor:
    """Values at ``sites`` carried to ``points`` by locally linear kernel regression.

    At each point a linear function is fitted to the sites' values with Gaussian weights
    of standard deviation ``width`` (a plain weighted mean is biased wherever the sites'
    density changes, e.g. at a molecule's surface, for a field as simple as a rotation);
    a ridge on the slope, ``RIDGE`` times the weights' total, keeps the fit defined where
    one site dominates. Points far from every site take their nearest sites' values.

    Parameters
    ----------
    points
        `(P, 3)` where the field is wanted (any length unit).
    sites
        `(N, 3)` where it is known (same unit).
    values
        `(N, K)` the known values.
    width
        Kernel standard deviation (same unit).

    Returns
    -------
    torch.Tensor
        `(P, K)` interpolated values (float64).
    """
    sites = sites.double()
    values = values.double()
    out = []
    rows = max(1, 2**22 // max(len(sites), 1))  # bounds the (rows, N, 3) temporaries
    for chunk in points.double().split(rows):
        logits = -torch.cdist(chunk, sites).pow(2) / (2.0 * width**2)
        weights = torch.softmax(logits, dim=1)  # (P, N), rows sum to 1
        offsets = (sites[None] - chunk[:, None]) / width  # (P, N, 3), in kernel widths
        first = torch.einsum("pn,pni->pi", weights, offsets)
        second = torch.einsum("pn,pni,pnj->pij", weights, offsets, offsets)
        system = torch.zeros(len(chunk), 4, 4, dtype=torch.float64)
        system[:, 0, 0] = 1.0
        system[:, 0, 1:] = first
        system[:, 1:, 0] = first
        system[:, 1:, 1:] = second + RIDGE * torch.eye(3, dtype=torch.float64)
        right = torch.cat(
            [
                (weights @ values)[:, None],
                torch.einsum("pn,pni,nk->pik", weights, offsets, values),
            ],
            dim=1,
        )  # (P, 4, K)
        out.append(torch.linalg.solve(system, right)[:, 0])
    return torch.cat(out) if out else values.new_zeros(0, values.shape[1])
