"""The maths the region losses (Dice, Jaccard, Tversky) share: soft counts and the class mean.

Pure functions of tensors; the options they take are validated in :mod:`litseg.losses.base`.
"""

import torch
import torch.nn.functional as F

from litseg.errors import ConfigError

__all__ = ["probs_targets_valid", "reduce_classes", "region_stats"]


def probs_targets_valid(
    logits: torch.Tensor, target: torch.Tensor, task: str, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return probabilities, one-hot/float targets and a validity mask, all (N, C, H, W).

    binary: logits (N, 1, H, W), target (N, H, W) in {0, 1}; multiclass: logits (N, C, H, W),
    target (N, H, W) class indices; multilabel: logits and target (N, C, H, W). Pixels equal to
    ``ignore_index`` get validity 0 and contribute nothing.
    """
    valid = (
        torch.ones_like(target, dtype=logits.dtype)
        if ignore_index is None
        else (target != ignore_index).to(logits.dtype)
    )
    if task == "multiclass":
        probs = logits.softmax(dim=1)
        safe = target.masked_fill(valid == 0, 0).long()
        valid = valid.unsqueeze(1)
        onehot = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
        return probs, onehot * valid, valid
    probs = logits.sigmoid()
    if task == "binary":
        target, valid = target.unsqueeze(1), valid.unsqueeze(1)
    return probs, target.to(logits.dtype) * valid, valid


def reduce_classes(
    per_class: torch.Tensor,
    present: torch.Tensor,
    absent: str = "smooth",
    class_weights: torch.Tensor | None = None,
    include_background: bool = True,
) -> torch.Tensor:
    """Average a per-class loss (C,) over classes, weighted, with absent classes handled.

    ``present`` marks the classes with at least one (valid) target pixel in the batch. For a
    class absent from the target, ``absent`` decides: ``smooth`` keeps the smoothed score (1
    when nothing is predicted either, so false positives still cost), ``zero`` counts its loss
    as 0 (what smp does), ``skip`` leaves it out of the mean. Weights give a weighted mean.
    """
    if absent == "zero":
        per_class = per_class * present.to(per_class.dtype)
    keep = present.clone() if absent == "skip" else torch.ones_like(present)
    if not include_background:
        keep[0] = False
    weights = keep.to(per_class.dtype)
    if class_weights is not None:
        if class_weights.numel() != per_class.numel():
            raise ConfigError(
                f"loss.class_weights has {class_weights.numel()} values but the model has "
                f"{per_class.numel()} output channels"
            )
        weights = weights * class_weights.to(per_class)
    total = weights.sum()
    if total == 0:  # nothing to average (e.g. skip with an all-background batch): zero loss
        return (per_class * 0).sum()
    return (per_class * weights).sum() / total


def region_stats(
    logits: torch.Tensor, target: torch.Tensor, task: str, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft true positives, false positives, false negatives per class (C,) and presence."""
    probs, onehot, valid = probs_targets_valid(logits, target, task, ignore_index)
    probs = probs * valid
    dims = (0, 2, 3)
    tp = (probs * onehot).sum(dims)
    fp = (probs * (1 - onehot) * valid).sum(dims)
    fn = ((1 - probs) * onehot).sum(dims)
    return tp, fp, fn, onehot.sum(dims) > 0
