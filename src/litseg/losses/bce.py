"""Binary cross-entropy from logits for binary and multilabel tasks, with ignore_index."""

import torch
import torch.nn.functional as F

from litseg.losses.base import SegmentationLoss

__all__ = ["BCELoss"]


class BCELoss(SegmentationLoss):
    """Mean binary cross-entropy over the pixels that are not ``ignore_index``.

    Args:
        task: binary (logits N,1,H,W; target N,H,W) or multilabel (both N,C,H,W).
        ignore_index: target value whose pixels are left out.
        pos_weight: weight of positive pixels (a scalar, or one per class for multilabel).
    """

    supported_tasks = ("binary", "multilabel")

    def __init__(
        self,
        task: str = "binary",
        ignore_index: int | None = None,
        pos_weight: float | list[float] | None = None,
    ) -> None:
        super().__init__(task, ignore_index)
        weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float)
        self.register_buffer("pos_weight", weight.view(-1, 1, 1) if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "binary":
            target = target.unsqueeze(1)
        valid = (
            torch.ones_like(logits)
            if self.ignore_index is None
            else (target != self.ignore_index).to(logits.dtype)
        )
        target = target.to(logits.dtype) * valid
        loss = F.binary_cross_entropy_with_logits(
            logits, target, reduction="none", pos_weight=self.pos_weight
        )
        return (loss * valid).sum() / valid.sum().clamp_min(1.0)
