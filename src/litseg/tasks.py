"""The one task vocabulary used everywhere: binary, multiclass, multilabel."""

from typing import Literal

from litseg.errors import ConfigError

Task = Literal["binary", "multiclass", "multilabel"]
TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel")


def check_task(task: str, key: str = "data.task") -> str:
    """Return ``task`` if it is a known task, else raise a ConfigError naming ``key``."""
    if task not in TASKS:
        raise ConfigError(f"{key}={task!r} is not a task; expected one of {', '.join(TASKS)}")
    return task


def check_num_classes(task: str, num_classes: int) -> None:
    """A binary task has one output channel; the others need at least two."""
    if task == "binary" and num_classes != 1:
        raise ConfigError(
            f"data.num_classes={num_classes} but data.task=binary expects 1 output channel"
        )
    if task != "binary" and num_classes < 2:
        raise ConfigError(f"data.num_classes={num_classes} but data.task={task} needs at least 2")
