"""The Optuna side of a sweep that both the sweeper and its jobs need: storage, pruner, trial.

litseg's Hydra sweeper (``hparams_search=optuna``, ``hydra_plugins.litseg_optuna_sweeper``)
asks Optuna for trials and launches one Hydra job per trial. A job may run in another
process or on another machine (submitit), so it finds its trial again from three
environment variables the sweeper sets through ``hydra.job.env_set``: the study's name, its
storage URL and the trial's number. :class:`OptunaPruning` then reports the monitored metric
after every validation and stops the run when the study's pruner says so
(:class:`litseg.errors.TrialPruned`, summary status ``pruned``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from litseg.errors import ConfigError, TrialPruned

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

# Set by the sweeper for each job (hydra.job.env_set): which trial of which study this run is.
ENV_STUDY = "LITSEG_OPTUNA_STUDY"
ENV_STORAGE = "LITSEG_OPTUNA_STORAGE"
ENV_TRIAL = "LITSEG_OPTUNA_TRIAL"
ENV_PRUNER = "LITSEG_OPTUNA_PRUNER"  # the pruner's config as JSON
PRUNERS = ("median", "hyperband", "none")
OPEN_ATTEMPTS = 4  # tries to open a study database (sweeps starting together race)


def import_optuna() -> Any:
    """``import optuna`` with its console handler off: its lines go where litseg's logging
    sends other libraries' records (the log file), not to the console."""
    import optuna

    from litseg.console import quiet_third_party_logs

    quiet_third_party_logs()
    return optuna


def open_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_callback: Callable[[Any, Any], None] | None = None,
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage for ``url`` (``sqlite:///...``, ``postgresql+psycopg://...``).

    With ``heartbeat_interval`` the trials' owners record heartbeats, and trials whose owner
    went silent for ``grace_period`` seconds count as stale: ``stale_callback(study, trial)``
    runs for each once it is failed (see the sweeper). SQLite waits up to a minute for a
    lock, since the sweeper and its jobs write to one file.
    """
    optuna = import_optuna()
    if "://" not in str(url):
        raise ConfigError(
            f"hydra.sweeper.storage={url!r} is not a database URL; use e.g. "
            "sqlite:///path/optuna.db or postgresql+psycopg://user@host/db"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=stale_callback,
            )
        except ImportError as exc:  # the URL's driver (psycopg, pymysql) is not installed
            raise ConfigError(f"hydra.sweeper.storage={_safe_url(url)}: {exc}") from exc
        except Exception as exc:  # sqlalchemy.exc.ArgumentError / OperationalError / ...
            # Sweeps started together on a new database race to create Optuna's tables (on
            # PostgreSQL: a unique violation in pg_type); the loser finds them made on a retry.
            from sqlalchemy.exc import DBAPIError

            racing = isinstance(exc, DBAPIError | optuna.exceptions.StorageInternalError)
            if racing and attempt + 1 < OPEN_ATTEMPTS:
                time.sleep(0.5 + random.random())
                continue
            raise ConfigError(
                f"hydra.sweeper.storage={_safe_url(url)}: cannot open it "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from exc
    raise AssertionError("unreachable")


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def named_spec(
    spec: Mapping[str, Any] | None,
    names: tuple[str, ...],
    default: str,
    where: str,
    shared: tuple[str, ...] = (),
) -> tuple[str, dict[str, Any]]:
    """``(name, arguments)`` from a spec such as ``{name: median, median: {n_warmup_steps: 1},
    hyperband: {...}}``: the block named by ``name`` (plus the ``shared`` keys) gives the
    arguments, so switching ``name`` on the command line keeps every block valid."""
    spec = dict(spec or {})
    name = str(spec.pop("name", default)).lower()
    if name not in names:
        raise ConfigError(f"{where}.name={name!r}; expected one of {', '.join(names)}")
    args = {key: spec.pop(key) for key in shared if key in spec}
    own = spec.pop(name, None) or {}
    for other in names:
        spec.pop(other, None)
    if spec or not isinstance(own, Mapping):
        raise ConfigError(
            f"{where}: unexpected key(s) {sorted(spec) or [name]}; expected name"
            + "".join(f", {k}" for k in shared)
            + f" and a block of arguments per name ({', '.join(names)})"
        )
    args.update(own)
    return name, args


def make_pruner(spec: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """The pruner named by ``spec['name']`` (median, hyperband, none), its block of
    arguments as keyword arguments, e.g. ``{name: median, median: {n_warmup_steps: 1}}``."""
    optuna = import_optuna()
    name, args = named_spec(spec, PRUNERS, "median", "hydra.sweeper.pruner")
    classes = {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "none": optuna.pruners.NopPruner,
    }
    return _construct(classes[name], args, f"hydra.sweeper.pruner.{name}")


def _construct(cls: type, kwargs: dict[str, Any], where: str) -> Any:
    """``cls(**kwargs)``, or a ConfigError naming an argument ``cls`` does not take."""
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}; {cls.__name__} takes {sorted(accepted)}"
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def trial_env() -> dict[str, str] | None:
    """The sweep's trial variables when this process runs an Optuna trial, else None."""
    if not os.environ.get(ENV_TRIAL):
        return None
    missing = [v for v in (ENV_STUDY, ENV_STORAGE) if not os.environ.get(v)]
    if missing:
        raise ConfigError(f"{ENV_TRIAL} is set but {', '.join(missing)} is not")
    return {
        "study": os.environ[ENV_STUDY],
        "storage": os.environ[ENV_STORAGE],
        "trial": os.environ[ENV_TRIAL],
        "pruner": os.environ.get(ENV_PRUNER, "{}"),
    }


def current_trial() -> optuna.Trial | None:
    """This job's running trial, reopened from the study's storage (None outside a sweep)."""
    env = trial_env()
    if env is None:
        return None
    optuna = import_optuna()
    try:
        number = int(env["trial"])
        pruner = make_pruner(json.loads(env["pruner"]))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{ENV_TRIAL}/{ENV_PRUNER}: {exc}") from exc
    storage = open_storage(env["storage"])
    try:
        study_id = storage.get_study_id_from_name(env["study"])
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    except KeyError as exc:
        raise ConfigError(
            f"Optuna study {env['study']!r} in {_safe_url(env['storage'])} has no trial "
            f"{number}: {exc}"
        ) from exc
    study = optuna.load_study(study_name=env["study"], storage=storage, pruner=pruner)
    return optuna.Trial(study, trial_id)


class OptunaPruning(Callback):
    """Inside an Optuna sweep: report ``monitor`` to the trial after every validation epoch
    and stop the run when the study's pruner (median or Hyperband) prunes the trial.

    Outside a sweep (no trial variables) it does nothing. The run then ends with
    :class:`litseg.errors.TrialPruned`: its summary.json says ``"status": "pruned"`` and the
    sweeper records the trial as pruned. Only rank 0 talks to the study; the decision is
    broadcast to the other ranks.

    Args:
        monitor: the metric to report, ``monitor.metric`` (the study's direction comes from
            ``monitor.mode`` through ``hydra.sweeper.direction``).
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.trial: optuna.Trial | None = None
        self._reported: set[int] = set()
        self._active = False
        self._warned = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._active = trial_env() is not None
        if self._active and trainer.is_global_zero and self.trial is None:
            self.trial = current_trial()
            assert self.trial is not None
            # a requeued or resumed run validates earlier epochs again: Optuna keeps the first
            number = self.trial.number
            done = [t for t in self.trial.study.get_trials(deepcopy=False) if t.number == number]
            self._reported = set(done[0].intermediate_values) if done else set()
            log.info(
                "Optuna trial %s of study %s: reporting %s each validation epoch",
                self.trial.number,
                os.environ[ENV_STUDY],
                self.monitor,
            )

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        reason = None
        if trainer.is_global_zero and self.trial is not None:
            reason = self._report(trainer)
        if trainer.world_size > 1:
            reason = trainer.strategy.broadcast(reason, src=0)
        if reason:
            raise TrialPruned(reason)

    def _report(self, trainer: Trainer) -> str | None:
        """Report this epoch's value; the reason to stop when the pruner prunes the trial."""
        import math

        value = trainer.callback_metrics.get(self.monitor)
        value = None if value is None else float(value)
        if value is None or not math.isfinite(value):
            if not self._warned:
                log.warning(
                    "Optuna pruning: %s is %s at epoch %d; nothing reported to the study",
                    self.monitor,
                    "not logged" if value is None else value,
                    trainer.current_epoch,
                )
                self._warned = True
            return None
        step = trainer.current_epoch
        assert self.trial is not None
        if step not in self._reported:
            self.trial.report(value, step)
            self._reported.add(step)
        if self.trial.should_prune():
            return (
                f"Optuna trial {self.trial.number} pruned at epoch {step}: {self.monitor}="
                f"{value:.4f} is not promising (pruner "
                f"{type(self.trial.study.pruner).__name__})"
            )
        return None


__all__ = [
    "ENV_PRUNER",
    "ENV_STORAGE",
    "ENV_STUDY",
    "ENV_TRIAL",
    "OptunaPruning",
    "current_trial",
    "make_pruner",
    "open_storage",
    "trial_env",
]
