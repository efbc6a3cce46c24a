"""Segmentation losses from logits, with explicit binary / multiclass / multilabel tasks."""

from torch import nn

from litseg.errors import ConfigError
from litseg.tasks import TASKS


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
