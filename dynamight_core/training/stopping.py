"""When the VAE has learnt what it will learn: the stopping rule of ``train-vae``.

The validation loss keeps falling in the fourth decimal long after the latents and the
motion stop changing (issue 31: 124 and 143 epochs of the 150 allowed, latents as good
after 40), so "no new best for ``patience`` epochs" alone runs most epochs for nothing.
The rule here is scale-free: training stops when the last ``window`` epochs made less than
``share`` of the validation loss's whole descent so far,

    (best[t - window] - best[t]) / (first - best[t]) < share,

where ``best[t]`` is the lowest validation loss up to epoch ``t`` and ``first`` is the
first epoch's. While nothing has been learnt (the loss still at its start) the whole
descent is the recent one and the share is 1, so a slow start never stops training; after
``min_epochs`` only. ``patience`` (no new best at all) and ``max_epochs`` stay as limits.

Alongside, every epoch records how far the validation particles' latents moved since
the last epoch, as a fraction of their spread (RMS change / RMS distance from their mean):
a diagnostic of the embedding's convergence, shown in the training history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StoppingRule:
    """The descent-share rule (config section ``vae``).

    Attributes
    ----------
    window
        Epochs over which the recent descent is measured.
    share
        Stop when the recent descent is below this fraction of the whole descent (0: never
        stop on it; only ``patience`` and ``max_epochs``).
    min_epochs
        Epochs always trained before the rule may stop.
    """

    window: int
    share: float
    min_epochs: int

    def descent_share(self, validation: Sequence[float]) -> float | None:
        """The recent descent's share of the whole descent.

        ``None`` before ``window + 1`` epochs, or while the loss is still at its start.
        """
        if len(validation) <= self.window:
            return None
        best_now = min(validation)
        best_before = min(validation[: len(validation) - self.window])
        descent = validation[0] - best_now
        if descent <= 0:
            return None
        return (best_before - best_now) / descent

    def reason_to_stop(self, validation: Sequence[float]) -> str:
        """Why training stops after these epochs' validation losses ('' to go on)."""
        if self.share <= 0 or len(validation) < self.min_epochs:
            return ""
        share = self.descent_share(validation)
        if share is None or share >= self.share:
            return ""
        return (
            f"converged: the last {self.window} epochs made {100 * share:.1f}% of the "
            f"validation loss's descent (vae.stop_share {self.share:g})"
        )


def latent_change(before: torch.Tensor | None, after: torch.Tensor) -> float:
    """RMS change of `(P, L)` latents between two epochs over their RMS spread (nan first)."""
    if before is None or before.shape != after.shape:
        return float("nan")
    spread = (after - after.mean(dim=0)).pow(2).sum(dim=1).mean().sqrt()
    change = (after - before).pow(2).sum(dim=1).mean().sqrt()
    return float(change / spread.clamp(min=1e-12))
