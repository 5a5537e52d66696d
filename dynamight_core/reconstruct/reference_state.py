"""The conformation a half set's deformed maps are reconstructed in: its reference state.

The deformed reconstruction brings every particle back to one state of the molecule. The
trained decoder's displacements are relative to the model's *trained* consensus, which
training moves (``vae.consensus_update_every``: towards the half's least-deformed
particles, and ``vae.lr_positions``), so two half sets trained independently end in two
different states, and the FSC of their maps then measures that mismatch, not noise. A
:class:`ReferenceState` puts the map in a state defined the same way in both halves and
estimated from that half alone (``deformed.reference``):

* ``consensus_fit``: the half's own consensus fit, the pseudo-atoms before VAE training
  (``gaussians/warmup_half{h}.pt``, fitted to the half's consensus map: the state of the
  consensus map itself);
* ``mean``: each pseudo-atom's mean deformed position over all of the half's particles;
* ``trained``: the trained consensus (the maps of earlier versions; kept for comparison).

The reference positions ``r_j`` and the trained consensus ``c_j`` are the same Gaussians,
so ``delta_j = c_j - r_j`` is known at ``r_j``; a smooth field ``delta(y)`` (a normalised
Gaussian kernel of width :data:`SMOOTHING_OF_SPACING` control-grid spacings over the
pseudo-atoms) carries it to any point ``y`` of the reference frame. A voxel ``y`` of the
map is the consensus point ``y + delta(y)``, which the half's field moves by
``d(z, y + delta(y))``; so the map's field is ``u(z, y) = delta(y) + d(z, y + delta(y))``
(:meth:`ReferenceState.field`). With ``trained`` it is the decoder's field, unchanged.

:func:`drift_a` records how far training moved the half's consensus. How far the two half
maps' conformations are apart is measured on the maps themselves
(:mod:`~dynamight_core.metrics.registration`, stage ``fsc-deformed``): an earlier measure on
the pseudo-atoms, each state taken as its offset from its half's own consensus fit, was
dominated by the two fits' independent placement of the pseudo-atoms and ranked the
references opposite to their half maps' FSC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dynamight_core.geometry.scattered import kernel_interpolate
from dynamight_core.models.deformation import DeformationModel
from dynamight_core.reconstruct.deformed_projector import DisplacementField

REFERENCES = ("mean", "consensus_fit", "trained")
# kernel width of the offset field, in control-grid spacings: the field cannot represent
# anything finer, and the consensus fit's pseudo-atoms jitter by single Gaussians
SMOOTHING_OF_SPACING = 0.5
STATE_KIND = "dynamight-reference-state"


@torch.no_grad()
def mean_positions_a(
    model: DeformationModel, latents: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """`(N, 3)` each Gaussian's mean deformed position (Å) over `(P, L)` ``latents``."""
    total = torch.zeros(model.consensus.n_gaussians, 3, dtype=torch.float64)
    for part in latents.split(batch_size):
        moved = model.deformed_positions_a(part.to(model.consensus.positions.device))
        total += moved.double().sum(dim=0).cpu()
    return (total / max(len(latents), 1)).float()


@dataclass
class ReferenceState:
    """The state one half set's deformed maps are reconstructed in.

    Attributes
    ----------
    kind
        One of :data:`REFERENCES`.
    reference_a
        `(N, 3)` the reference pseudo-atom positions (Å, about the box centre).
    consensus_a
        `(N, 3)` the trained model's consensus positions (Å).
    fit_a
        `(N, 3)` the half's consensus fit before VAE training (Å).
    mean_a
        `(N, 3)` each pseudo-atom's mean deformed position over the half's particles (Å).
    box_a
        Edge of the box (Å).
    smoothing_a
        Width of the kernel that carries offsets from pseudo-atoms to points (Å).
    """

    kind: str
    reference_a: torch.Tensor
    consensus_a: torch.Tensor
    fit_a: torch.Tensor
    mean_a: torch.Tensor
    box_a: float
    smoothing_a: float

    def offsets(self, points: torch.Tensor) -> torch.Tensor:
        """`(P, 3)` ``delta = consensus - reference`` (box units) at `(P, 3)` points (box units)."""
        if self.kind == "trained":
            return torch.zeros_like(points)
        delta = (self.consensus_a - self.reference_a) / self.box_a
        values = kernel_interpolate(
            points.cpu(), self.reference_a / self.box_a, delta, self.smoothing_a / self.box_a
        )
        return values.to(points)

    def field(self, base: DisplacementField) -> DisplacementField:
        """The map's field ``u(z, y) = delta(y) + base(z, y + delta(y))`` (box units).

        ``base`` is the half's field at consensus positions (the decoder, or minus the
        inverse network's). The offsets are computed once per set of points.
        """
        if self.kind == "trained":
            return base
        cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

        def referenced(latents: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
            key = (points.data_ptr(), tuple(points.shape))
            if key not in cache:
                cache.clear()
                cache[key] = self.offsets(points)
            delta = cache[key]
            return delta[None] + base(latents, points + delta)

        return referenced

    def state(self) -> dict[str, object]:
        """Tensors and numbers for a weights-only torch file."""
        return {
            "kind": STATE_KIND,
            "reference": self.kind,
            "reference_a": self.reference_a.cpu(),
            "consensus_a": self.consensus_a.cpu(),
            "fit_a": self.fit_a.cpu(),
            "mean_a": self.mean_a.cpu(),
            "box_a": self.box_a,
            "smoothing_a": self.smoothing_a,
        }

    @classmethod
    def from_state(cls, state: dict[str, object]) -> ReferenceState:
        """A state written by :meth:`state`."""
        tensors = {
            key: torch.as_tensor(state[key]).float()
            for key in ("reference_a", "consensus_a", "fit_a", "mean_a")
        }
        return cls(
            str(state["reference"]),
            box_a=float(state["box_a"]),  # type: ignore[arg-type]
            smoothing_a=float(state["smoothing_a"]),  # type: ignore[arg-type]
            **tensors,
        )


def reference_state(
    kind: str,
    model: DeformationModel,
    latents: torch.Tensor,
    fit_a: torch.Tensor,
    control_grid: int,
) -> ReferenceState:
    """The reference state ``kind`` of a half set.

    Parameters
    ----------
    kind
        One of :data:`REFERENCES`.
    model
        The half's trained deformation model.
    latents
        `(P, L)` the latents of all of the half's particles (the real ones, never the null
        control's shuffle; a shuffle gives the same mean in another summation order).
    fit_a
        `(N, 3)` the half's consensus fit before VAE training (Å), the same Gaussians.
    control_grid
        Nodes per axis of the deformation's control grid (sets the kernel width).
    """
    if kind not in REFERENCES:
        raise ValueError(f"reference {kind!r}: expected one of {', '.join(REFERENCES)}")
    consensus_a = model.consensus.positions_a().detach().cpu().float()
    mean_a = mean_positions_a(model, latents)
    reference = {"consensus_fit": fit_a, "mean": mean_a, "trained": consensus_a}[kind]
    return state_with(kind, reference, model, mean_a, fit_a, control_grid)


def state_with(
    kind: str,
    reference_a: torch.Tensor,
    model: DeformationModel,
    mean_a: torch.Tensor,
    fit_a: torch.Tensor,
    control_grid: int,
) -> ReferenceState:
    """A :class:`ReferenceState` of ``model`` whose reference pseudo-atoms are ``reference_a``.

    ``mean_a`` and ``fit_a`` `(N, 3)` (Å) are the half's mean state and consensus fit, kept
    in the record; the kernel's width follows the ``control_grid``.
    """
    box_a = float(model.consensus.box_a)
    return ReferenceState(
        kind,
        reference_a.detach().cpu().float(),
        model.consensus.positions_a().detach().cpu().float(),
        fit_a.detach().cpu().float(),
        mean_a,
        box_a,
        SMOOTHING_OF_SPACING * box_a / (control_grid - 1),
    )


def drift_a(state: ReferenceState) -> dict[str, float]:
    """RMS distances (Å) between the half's consensus fit, trained consensus and mean state.

    How far training moved the consensus, where the particles are on average, and how far
    the map's state is from the trained consensus.
    """

    def rms(a: torch.Tensor, b: torch.Tensor) -> float:
        return round(math.sqrt(float((a - b).pow(2).sum(dim=1).mean())), 4)

    return {
        "trained_from_fit_rms_a": rms(state.consensus_a, state.fit_a),
        "mean_from_fit_rms_a": rms(state.mean_a, state.fit_a),
        "reference_from_trained_rms_a": rms(state.reference_a, state.consensus_a),
    }
