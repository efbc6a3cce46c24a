"""The Sweeper class Hydra instantiates; Optuna is imported only when a sweep starts."""

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class LitsegOptunaSweeper(Sweeper):
    """Hydra sweeper on Optuna's ask-and-tell API (see ``_impl.OptunaSweeperImpl``)."""

    def __init__(self, **kwargs: Any) -> None:
        from ._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(**kwargs)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.sweeper.sweep(arguments)
