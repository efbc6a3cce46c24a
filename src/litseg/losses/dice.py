"""Soft Dice loss (Milletari et al., 2016) for binary, multiclass and multilabel tasks."""

import torch
from torch import nn

from litseg.losses.common import probs_targets_valid
from litseg.tasks import check_task


class DiceLoss(nn.Module):
    """1 - soft Dice, averaged over classes, from logits.

    Args:
        task: binary, multiclass or multilabel.
        ignore_index: target value whose pixels are left out.
        smooth: added to numerator and denominator; keeps a class absent from the target
            (and predicted absent) at loss 0 instead of 0/0.
        squared: squared denominator (sum p^2 + sum t^2), as in V-Net.
        log: -log(Dice) instead of 1 - Dice.
        include_background: for multiclass, whether class 0 counts in the mean.
    """

    supported_tasks = ("binary", "multiclass", "multilabel")

    def __init__(
        self,
        task: str = "multiclass",
        ignore_index: int | None = None,
        smooth: float = 1.0,
        squared: bool = False,
        log: bool = False,
        include_background: bool = True,
    ) -> None:
        super().__init__()
        self.task = check_task(task, "loss.task")
        self.ignore_index = ignore_index
        self.smooth = smooth
        self.squared = squared
        self.log = log
        self.include_background = include_background

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
        if self.task == "multiclass" and not self.include_background:
            dice = dice[1:]
        loss = -torch.log(dice.clamp_min(1e-7)) if self.log else 1 - dice
        return loss.mean()
