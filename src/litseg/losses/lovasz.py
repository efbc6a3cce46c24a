"""Lovász losses (Berman et al., 2018): convex surrogates that optimise IoU directly.

Lovász-softmax for multiclass, Lovász-hinge for binary and (per channel) multilabel.
"""

import torch
import torch.nn.functional as F

from litseg.errors import ConfigError
from litseg.losses.base import SegmentationLoss

__all__ = ["LovaszLoss", "lovasz_grad", "lovasz_hinge_flat", "lovasz_softmax_flat"]


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovász hinge of flat logits (P,) against 0/1 labels (P,)."""
    if labels.numel() == 0:
        return logits.sum() * 0.0
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, order = torch.sort(errors, descending=True)
    return torch.dot(F.relu(errors_sorted), lovasz_grad(labels[order]))


def lovasz_softmax_flat(probs: torch.Tensor, labels: torch.Tensor, classes: str) -> torch.Tensor:
    """Lovász-softmax of flat probabilities (P, C) against class indices (P,)."""
    if labels.numel() == 0:
        return probs.sum() * 0.0
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).to(probs.dtype)
        if classes == "present" and fg.sum() == 0:
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
    return torch.stack(losses).mean() if losses else probs.sum() * 0.0


class LovaszLoss(SegmentationLoss):
    """Lovász-softmax (multiclass) or Lovász-hinge (binary; multilabel averages channels).

    Args:
        task: binary, multiclass or multilabel.
        ignore_index: target value whose pixels are left out.
        per_image: compute per image and average (else once over the whole batch).
        classes: multiclass only: ``present`` averages over the classes present in the
            target (the paper's default), ``all`` over every class.
    """

    supported_tasks = ("binary", "multiclass", "multilabel")

    def __init__(
        self,
        task: str = "multiclass",
        ignore_index: int | None = None,
        per_image: bool = False,
        classes: str = "present",
    ) -> None:
        super().__init__(task, ignore_index)
        self.per_image = per_image
        if classes not in ("present", "all"):
            raise ConfigError(f"loss.classes={classes!r}; expected present or all")
        self.classes = classes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.per_image:
            losses = [self._one(x[None], y[None]) for x, y in zip(logits, target, strict=True)]
            return torch.stack(losses).mean()
        return self._one(logits, target)

    def _one(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "multiclass":
            probs = logits.softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
            labels = target.reshape(-1)
            if self.ignore_index is not None:
                keep = labels != self.ignore_index
                probs, labels = probs[keep], labels[keep]
            return lovasz_softmax_flat(probs, labels, self.classes)
        if self.task == "binary":
            target = target.unsqueeze(1)
        losses = []
        for c in range(logits.shape[1]):
            x, y = logits[:, c].reshape(-1), target[:, c].reshape(-1)
            if self.ignore_index is not None:
                keep = y != self.ignore_index
                x, y = x[keep], y[keep]
            losses.append(lovasz_hinge_flat(x, y.to(x.dtype)))
        return torch.stack(losses).mean()
