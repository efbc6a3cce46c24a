"""Focal loss (Lin et al., 2017): cross-entropy down-weighting pixels already classified well."""

import torch
import torch.nn.functional as F

from litseg.losses.base import SegmentationLoss, class_weight_tensor

__all__ = ["FocalLoss"]


class FocalLoss(SegmentationLoss):
    """-(1 - p_t)^gamma log p_t averaged over the pixels that are not ``ignore_index``.

    multiclass: p_t is the softmax probability of the target class; class weights weigh each
    pixel by its target class and the mean is weighted (so gamma=0 is torch's cross-entropy).
    binary / multilabel: sigmoid focal loss per channel as in torchvision.ops.sigmoid_focal_loss,
    ``alpha`` weighting positives and 1 - alpha negatives, class weights per channel.

    Args:
        task: binary, multiclass or multilabel.
        ignore_index: target value whose pixels are left out.
        gamma: focusing exponent (0: cross-entropy).
        alpha: binary/multilabel positive-class weight in [0, 1], or None for none.
        class_weights: one weight per class (multiclass) or channel (multilabel).
    """

    supported_tasks = ("binary", "multiclass", "multilabel")

    def __init__(
        self,
        task: str = "multiclass",
        ignore_index: int | None = None,
        gamma: float = 2.0,
        alpha: float | None = None,
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__(task, ignore_index)
        self.gamma, self.alpha = gamma, alpha
        self.register_buffer("class_weights", class_weight_tensor(class_weights))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (
            torch.ones_like(target, dtype=torch.bool)
            if self.ignore_index is None
            else target != self.ignore_index
        )
        if self.task == "multiclass":
            return self._softmax(logits, target, valid)
        if self.task == "binary":
            target, valid = target.unsqueeze(1), valid.unsqueeze(1)
        t = target.to(logits.dtype) * valid
        ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        p = logits.sigmoid()
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * (1 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * t + (1 - self.alpha) * (1 - t))
        if self.class_weights is not None:
            loss = loss * self.class_weights.to(loss).view(1, -1, 1, 1)
        valid = valid.to(logits.dtype).expand_as(loss)
        return (loss * valid).sum() / valid.sum().clamp_min(1.0)

    def _softmax(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
        safe = target.masked_fill(~valid, 0).long().unsqueeze(1)
        logp_t = logits.log_softmax(dim=1).gather(1, safe).squeeze(1)
        loss = -((1 - logp_t.exp()) ** self.gamma) * logp_t
        weight = valid.to(logits.dtype)
        if self.class_weights is not None:
            weight = weight * self.class_weights.to(logits)[safe.squeeze(1)]
        return (loss * weight).sum() / weight.sum().clamp_min(1e-12)
