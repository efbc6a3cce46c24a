"""A weighted sum of losses, so combinations like Dice + BCE are defined in YAML alone."""

from collections.abc import Mapping

import torch
from torch import nn

from litseg.errors import ConfigError
from litseg.losses.base import supported_tasks
from litseg.tasks import TASKS

__all__ = ["WeightedSumLoss"]


class WeightedSumLoss(nn.Module):
    """sum_k weights[k] * terms[k](logits, target); fits the tasks all its terms fit.

    Args:
        terms: named losses, e.g. ``{"dice": DiceLoss(...), "bce": BCELoss(...)}``.
        weights: one weight per term name (missing names weigh 1.0).
    """

    def __init__(
        self, terms: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None
    ) -> None:
        super().__init__()
        if not terms:
            raise ConfigError("loss.terms is empty; a weighted sum needs at least one loss")
        weights = dict(weights or {})
        unknown = set(weights) - set(terms)
        if unknown:
            raise ConfigError(
                f"loss.weights names {sorted(unknown)}, which are not in loss.terms "
                f"({', '.join(terms)})"
            )
        self.terms = nn.ModuleDict(dict(terms))
        self.weights = {name: float(weights.get(name, 1.0)) for name in terms}
        shared = set.intersection(*(set(supported_tasks(t)) for t in self.terms.values()))
        self.supported_tasks = tuple(t for t in TASKS if t in shared)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * self.terms[name](logits, target) for name, w in self.weights.items())
