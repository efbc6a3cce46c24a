"""Cross-entropy for multiclass segmentation: torch's loss with litseg's task contract."""

import torch
import torch.nn.functional as F
from torch import nn

from litseg.losses.base import class_weight_tensor, loss_task

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """torch.nn.CrossEntropyLoss taking ``ignore_index=None`` and list class weights.

    A subclass of torch's loss (not of SegmentationLoss) so it keeps torch's attributes and
    state dict; it declares ``supported_tasks`` and checks ``task`` all the same.

    Args:
        task: must be multiclass (declared so a mismatch is caught before training).
        ignore_index: target value whose pixels are left out (None: none).
        class_weights: one weight per class, or None.
        label_smoothing: as in torch.
    """

    supported_tasks = ("multiclass",)

    def __init__(
        self,
        task: str = "multiclass",
        ignore_index: int | None = None,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        weight = class_weight_tensor(class_weights)
        super().__init__(
            weight=weight,
            ignore_index=-100 if ignore_index is None else ignore_index,
            label_smoothing=label_smoothing,
        )
        self.task = loss_task(task)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.dtype)
        return F.cross_entropy(
            logits,
            target.long(),
            weight=weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
        )
