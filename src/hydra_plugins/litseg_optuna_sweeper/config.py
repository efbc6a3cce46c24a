"""The sweeper's config node (``hydra.sweeper``), registered as ``hydra/sweeper=litseg_optuna``."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class LitsegOptunaSweeperConf:
    """``hydra.sweeper`` for ``hydra/sweeper=litseg_optuna`` (conf/hparams_search/optuna.yaml).

    direction: ``minimize`` or ``maximize`` (litseg: ``${monitor.mode}imize``).
    study_name / storage: the Optuna study; storage null keeps it in
        ``<hydra.sweep.dir>/optuna.db`` (SQLite), a database URL shares it between sweeps.
    n_trials: trials the study holds when the sweep ends (finished, pruned or failed), counted
        over every sweep process working on the study.
    n_jobs: trials asked for at once and handed to the launcher together.
    sampler: ``name`` (tpe, random, cmaes, grid) and the Optuna sampler's arguments.
    pruner: ``name`` (median, hyperband, none) and the Optuna pruner's arguments.
    heartbeat_interval / grace_period: seconds; a running trial whose sweep process has not
        written a heartbeat for ``grace_period`` is failed and asked again with its parameters.
    max_failure_rate: the share of a batch's trials that may fail before the sweep stops.
    params: the search space, ``key: interval(...)``, ``tag(log, interval(...))``,
        ``choice(...)``, ``range(...)`` or a fixed value.
    """

    _target_: str = "hydra_plugins.litseg_optuna_sweeper.optuna_sweeper.LitsegOptunaSweeper"
    direction: str = "minimize"
    study_name: str | None = None
    storage: str | None = None
    n_trials: int = 20
    n_jobs: int = 1
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    heartbeat_interval: int = 30
    grace_period: int = 120
    max_failure_rate: float = 0.0
    params: dict[str, Any] | None = None


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="litseg_optuna",
    node=LitsegOptunaSweeperConf,
    provider="litseg",
)
