"""The Sweeper class Hydra instantiates; Optuna is imported only when a sweep starts."""

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from litseg.errors import LitsegError

T = TypeVar("T")


def _one_line(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn``; a mistake in the sweep's config ends the command with one line, exit 2."""
    try:
        return fn(*args, **kwargs)
    except LitsegError as exc:
        print(f"litseg: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


class LitsegOptunaSweeper(Sweeper):
    """Hydra sweeper on Optuna's ask-and-tell API (see ``_impl.OptunaSweeperImpl``)."""

    def __init__(self, **kwargs: Any) -> None:
        from ._impl import OptunaSweeperImpl

        self.sweeper = _one_line(OptunaSweeperImpl, **kwargs)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return _one_line(self.sweeper.sweep, arguments)
