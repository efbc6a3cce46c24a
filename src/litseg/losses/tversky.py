"""Tversky loss (Salehi et al., 2017): Dice with separate weights on false positives/negatives."""

import torch

from litseg.losses.base import RegionLoss
from litseg.losses.functional import region_stats

__all__ = ["TverskyLoss"]


class TverskyLoss(RegionLoss):
    """1 - (TP + smooth) / (TP + alpha FP + beta FN + smooth) per class, averaged over classes.

    Soft counts from probabilities, summed over batch and pixels. alpha = beta = 0.5 is Dice
    (with the smoothing halved); alpha = beta = 1 is the Jaccard index. beta > alpha favours
    recall (small structures).

    Args:
        task: binary, multiclass or multilabel.
        ignore_index: target value whose pixels are left out.
        alpha: weight of false positives.  beta: weight of false negatives.
        smooth: added to numerator and denominator.
        gamma: focal Tversky exponent, loss = (1 - TI)^gamma (1: plain Tversky).
        include_background: for multiclass, whether class 0 counts in the mean.
        absent: ``smooth``, ``zero`` or ``skip``, as for DiceLoss.
        class_weights: one weight per class for a weighted class mean.
    """

    def __init__(
        self,
        task: str = "multiclass",
        ignore_index: int | None = None,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1.0,
        gamma: float = 1.0,
        include_background: bool = True,
        absent: str = "smooth",
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__(task, ignore_index, smooth, include_background, absent, class_weights)
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp, fp, fn, present = region_stats(logits, target, self.task, self.ignore_index)
        denominator = tp + self.alpha * fp + self.beta * fn + self.smooth
        score = (tp + self.smooth) / denominator.clamp_min(1e-7)
        loss = (1 - score).clamp_min(0) ** self.gamma if self.gamma != 1 else 1 - score
        return self.reduce(loss, present)
