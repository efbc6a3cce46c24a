"""Soft Jaccard (IoU) loss: a differentiable 1 - IoU per class."""

import torch

from litseg.losses.base import RegionLoss
from litseg.losses.functional import region_stats

__all__ = ["JaccardLoss"]


class JaccardLoss(RegionLoss):
    """1 - (I + smooth) / (U + smooth) per class with soft I = sum p t, U = sum p + sum t - I.

    Args:
        task: binary, multiclass or multilabel.
        ignore_index: target value whose pixels are left out.
        smooth: added to numerator and denominator.
        log: -log(IoU) instead of 1 - IoU.
        include_background: for multiclass, whether class 0 counts in the mean.
        absent: ``smooth``, ``zero`` or ``skip``, as for DiceLoss.
        class_weights: one weight per class for a weighted class mean.
    """

    def __init__(
        self,
        task: str = "multiclass",
        ignore_index: int | None = None,
        smooth: float = 1.0,
        log: bool = False,
        include_background: bool = True,
        absent: str = "smooth",
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__(task, ignore_index, smooth, include_background, absent, class_weights)
        self.log = log

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp, fp, fn, present = region_stats(logits, target, self.task, self.ignore_index)
        iou = (tp + self.smooth) / (tp + fp + fn + self.smooth).clamp_min(1e-7)
        loss = -torch.log(iou.clamp_min(1e-7)) if self.log else 1 - iou
        return self.reduce(loss, present)
