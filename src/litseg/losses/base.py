"""The loss contract and what every loss validates; no maths here.

A litseg loss is an ``nn.Module`` called as ``loss(logits, target)`` that declares the tasks
it fits in a class attribute ``supported_tasks`` (a subset of ``litseg.tasks.TASKS``). The
builders compare that declaration with ``data.task`` before training
(:func:`check_loss_fits_task`), and the config tests derive from it which tasks to try each
``conf/loss/*.yaml`` with. Each loss's maths lives in its own module; the maths the region
losses share lives in :mod:`litseg.losses.functional`.
"""

import torch
from torch import nn

from litseg.errors import ConfigError
from litseg.losses.functional import reduce_classes
from litseg.tasks import TASKS, check_task

__all__ = [
    "ABSENT_CHOICES",
    "RegionLoss",
    "SegmentationLoss",
    "check_absent",
    "check_loss_fits_task",
    "class_weight_tensor",
    "loss_task",
    "supported_tasks",
]

ABSENT_CHOICES = ("smooth", "zero", "skip")


def supported_tasks(loss: nn.Module) -> tuple[str, ...]:
    """The tasks a loss declares it fits (all tasks when it declares none)."""
    return tuple(getattr(loss, "supported_tasks", TASKS))


def check_loss_fits_task(loss: nn.Module, task: str, loss_name: str | None = None) -> None:
    """Raise a ConfigError naming the loss and the task when they do not fit together."""
    fits = supported_tasks(loss)
    if task not in fits:
        name = loss_name or type(loss).__name__
        raise ConfigError(
            f"loss={name} does not fit data.task={task}: it supports {', '.join(fits)}. "
            f"Choose another loss or data.task."
        )


def loss_task(task: str) -> str:
    """``task`` if it is a known task, else a ConfigError naming ``loss.task``."""
    return check_task(task, "loss.task")


def class_weight_tensor(
    class_weights: list[float] | str | None, key: str = "loss.class_weights"
) -> torch.Tensor | None:
    """Class weights as a tensor; ``median_frequency`` must have been resolved beforehand."""
    if class_weights is None:
        return None
    if isinstance(class_weights, str):
        raise ConfigError(
            f"{key}={class_weights!r}: expected a list of numbers; 'median_frequency' is "
            "computed from the training set by litseg's build_module (train.py, eval.py)"
        )
    weights = torch.as_tensor(list(class_weights), dtype=torch.float)
    if weights.ndim != 1 or (weights < 0).any():
        raise ConfigError(f"{key}={class_weights}: expected one non-negative number per class")
    return weights


def check_absent(absent: str) -> str:
    """Validate the ``loss.absent`` option of the region losses."""
    if absent not in ABSENT_CHOICES:
        raise ConfigError(f"loss.absent={absent!r}; expected one of {', '.join(ABSENT_CHOICES)}")
    return absent


class SegmentationLoss(nn.Module):
    """Base of the losses configured by ``task`` and ``ignore_index``: checks the task once.

    A subclass sets ``supported_tasks`` and implements ``forward(logits, target)``.

    Args:
        task: binary, multiclass or multilabel (``${data.task}`` in the YAML).
        ignore_index: target value whose pixels are left out (``${data.ignore_index}``).
    """

    supported_tasks: tuple[str, ...] = TASKS

    def __init__(self, task: str = "multiclass", ignore_index: int | None = None) -> None:
        super().__init__()
        self.task = loss_task(task)
        self.ignore_index = ignore_index


class RegionLoss(SegmentationLoss):
    """What Dice, Jaccard and Tversky share: the task, ignored pixels, and the class mean.

    Args:
        task: binary, multiclass or multilabel.
        ignore_index: target value whose pixels are left out.
        smooth: added to numerator and denominator.
        include_background: for multiclass, whether class 0 counts in the mean.
        absent: ``smooth``, ``zero`` or ``skip``: how a class with no target pixel counts.
        class_weights: one weight per class for a weighted class mean.
    """

    supported_tasks = TASKS

    def __init__(
        self,
        task: str = "multiclass",
        ignore_index: int | None = None,
        smooth: float = 1.0,
        include_background: bool = True,
        absent: str = "smooth",
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__(task, ignore_index)
        self.smooth = smooth
        self.include_background = include_background
        self.absent = check_absent(absent)
        self.register_buffer("class_weights", class_weight_tensor(class_weights))

    def reduce(self, loss: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Mean of the per-class ``loss`` as ``absent``, weights and background say."""
        return reduce_classes(
            loss,
            present,
            self.absent,
            self.class_weights,
            self.include_background or self.task != "multiclass",
        )
