"""Soft Dice loss (Milletari et al., 2016) for binary, multiclass and multilabel tasks."""

import torch

from litseg.losses.base import RegionLoss
from litseg.losses.functional import probs_targets_valid

__all__ = ["DiceLoss"]


class DiceLoss(RegionLoss):
    """1 - soft Dice per class, (weighted) averaged over classes, from logits.

    Dice_c = (2 sum p t + smooth) / (sum p + sum t + smooth), sums over batch and pixels.

    Args:
        task: binary, multiclass or multilabel.
        ignore_index: target value whose pixels are left out.
        smooth: added to numerator and denominator.
        squared: squared denominator (sum p^2 + sum t^2), as in V-Net.
        log: -log(Dice) instead of 1 - Dice.
        include_background: for multiclass, whether class 0 counts in the mean.
        absent: how a class with no target pixel in the batch counts. ``smooth`` (default):
            its smoothed Dice, smooth / (sum p + smooth), which is ~1 (loss ~0) when nothing is
            predicted and falls as false positives grow; ``zero``: loss 0 whatever is predicted
            (smp's behaviour); ``skip``: left out of the class mean.
        class_weights: one weight per class for a weighted class mean.
    """

    def __init__(
        self,
        task: str = "multiclass",
        ignore_index: int | None = None,
        smooth: float = 1.0,
        squared: bool = False,
        log: bool = False,
        include_background: bool = True,
        absent: str = "smooth",
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__(task, ignore_index, smooth, include_background, absent, class_weights)
        self.squared = squared
        self.log = log

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs, onehot, valid = probs_targets_valid(logits, target, self.task, self.ignore_index)
        probs = probs * valid
        dims = (0, 2, 3)
        intersection = (probs * onehot).sum(dims)
        if self.squared:
            cardinality = (probs * probs).sum(dims) + (onehot * onehot).sum(dims)
        else:
            cardinality = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * intersection + self.smooth) / (cardinality + self.smooth).clamp_min(1e-7)
        loss = -torch.log(dice.clamp_min(1e-7)) if self.log else 1 - dice
        return self.reduce(loss, onehot.sum(dims) > 0)
