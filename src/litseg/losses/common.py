"""Shared preparation of logits and targets for the region losses (Dice and relatives)."""

import torch
import torch.nn.functional as F


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
