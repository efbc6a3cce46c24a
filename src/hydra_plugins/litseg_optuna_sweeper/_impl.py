"""litseg's Optuna sweeper: ask for trials, launch them as Hydra jobs, tell the results.

Each trial is one Hydra job whose folder is named after the trial's number
(``<hydra.sweep.dir>/<number>``). The job finds its trial through environment variables set
with ``hydra.job.env_set`` (:mod:`litseg.optuna_trial`), which every launcher carries into
the job's process, so :class:`litseg.optuna_trial.OptunaPruning` can report each epoch and
the pruner can stop the run; the job then ends with ``TrialPruned`` and the trial is told
PRUNED.

The study lives in a database: ``<hydra.sweep.dir>/optuna.db`` (SQLite) by default, or
``hydra.sweeper.storage``. ``n_trials`` is what the study holds at the end, counted over all
the sweep processes on it, so a second sweep with the same ``study_name`` and ``storage``
runs only what is left (a killed sweep resumes), and several sweeps share one study. A
trial counts when it is finished (complete, pruned, or failed in its job), running or
waiting. A running trial whose sweep process died is failed (at once when that process ran
on this machine, else after ``grace_period`` seconds without a heartbeat) and its parameters
are asked again. Trials beyond ``n_trials`` that two processes asked for at the same moment
are failed before they run, marked ``litseg_surplus``; trial creation is serialised per
study, so the first ``n_trials`` counted trials by number are the ones that run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from litseg.errors import ConfigError
from litseg.optuna_trial import (
    ENV_PRUNER,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL,
    _construct,
    _safe_url,
    import_optuna,
    make_pruner,
    named_spec,
    open_storage,
)

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "cmaes", "grid")
# user attributes the sweeper writes on trials
OWNER = "litseg_owner"  # host:pid:start of the sweep process running the trial
ERROR = "litseg_error"  # the job's error, on a trial that failed in its job
SURPLUS = "litseg_surplus"  # asked beyond n_trials by a race between sweep processes
RETRY_OF = "litseg_retry_of"  # the number of the stale trial whose parameters this one reruns
DEFAULT_DB = "optuna.db"


@contextmanager
def heartbeat_warnings_off() -> Iterator[None]:
    """Silence Optuna's notes that heartbeats are experimental and meant for Study.optimize:
    this sweeper records them itself, around ask-and-tell."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Hh]eartbeat.*")
        warnings.filterwarnings("ignore", message=".*fail_stale_trials.*")
        yield


@dataclass
class Param:
    """One searched parameter: its Optuna distribution and, when discrete, its grid values."""

    distribution: Any
    grid: list[Any] | None


def _to_param(override: Override) -> Param:
    """The Optuna distribution of a sweep override (interval, tag(log, ...), choice, range)."""
    optuna = import_optuna()
    dist = optuna.distributions
    key = override.get_key_element()
    value = override.value()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        bad = [c for c in choices if not isinstance(c, str | int | float | bool)]
        if bad or not choices:
            raise ConfigError(
                f"hydra.sweeper.params.{key}: choice() takes strings, numbers and booleans "
                f"(got {override.get_value_element_as_str()})"
            )
        return Param(dist.CategoricalDistribution(choices), choices)
    if isinstance(value, RangeSweep):
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if not values:
            raise ConfigError(f"hydra.sweeper.params.{key}: empty range")
        if all(isinstance(v, int) for v in values):
            step = int(value.step)
            return Param(dist.IntDistribution(values[0], values[-1], step=step), values)
        return Param(
            dist.FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step)),
            values,
        )
    if isinstance(value, IntervalSweep):
        low, high = value.start, value.end
        log_scale = "log" in value.tags
        if log_scale and low <= 0:
            raise ConfigError(f"hydra.sweeper.params.{key}: a log interval needs a start > 0")
        if low >= high:
            raise ConfigError(f"hydra.sweeper.params.{key}: interval start must be below its end")
        if "int" in value.tags:
            return Param(dist.IntDistribution(int(low), int(high), log=log_scale), None)
        return Param(dist.FloatDistribution(float(low), float(high), log=log_scale), None)
    raise ConfigError(
        f"hydra.sweeper.params.{key}={override.get_value_element_as_str()}: expected "
        "interval(), tag(log, interval()), choice(), range() or a value"
    )


def parse_search_space(arguments: Sequence[str]) -> tuple[dict[str, Param], dict[str, str]]:
    """Searched parameters and fixed overrides from ``key=value`` strings (later ones win)."""
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(list(arguments))
    except Exception as exc:  # hydra.errors.OverrideParseException
        raise ConfigError(f"hydra.sweeper.params: {str(exc).splitlines()[0]}") from exc
    space: dict[str, Param] = {}
    fixed: dict[str, str] = {}
    for override in parsed:
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = _to_param(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return space, fixed


_SIMPLE = re.compile(r"[\w./\-+@:]+")


def format_value(value: Any) -> str:
    """A sampled value as Hydra override text (strings quoted when they need it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        if _SIMPLE.fullmatch(value):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value)


def quote(text: str) -> str:
    """Any text as a quoted Hydra override value."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_sampler(spec: dict[str, Any], space: dict[str, Param]) -> tuple[Any, int | None]:
    """The sampler named by ``spec['name']`` with ``seed`` and its block of arguments
    (``{name: tpe, seed: 1, tpe: {n_startup_trials: 10}}``); for grid, also the grid's size."""
    optuna = import_optuna()
    name, args = named_spec(spec, SAMPLERS, "tpe", "hydra.sweeper.sampler", shared=("seed",))
    where = f"hydra.sweeper.sampler.{name}"
    if name == "grid":
        continuous = [k for k, p in space.items() if p.grid is None]
        if continuous:
            raise ConfigError(
                f"hydra.sweeper.sampler.name=grid needs choice() or range() for every "
                f"parameter, not interval(): {', '.join(continuous)}"
            )
        grid = {k: p.grid for k, p in space.items()}
        sampler = _construct(_grid_sampler_class(), {"search_space": grid, **args}, where)
        return sampler, math.prod(len(v) for v in grid.values())
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "hydra.sweeper.sampler.name=cmaes needs the cmaes package "
                "(pip install 'litseg[sweep]')"
            ) from exc
    classes = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
    }
    return _construct(classes[name], args, where), None


def _grid_sampler_class() -> type:
    """GridSampler that never calls ``study.stop()`` (ask-and-tell has no optimize loop to
    stop; the sweeper stops at the grid's size)."""
    optuna = import_optuna()

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, *args: Any, **kwargs: Any) -> None:
            pass

    return GridSampler


def _process_start(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot ('' where unknown), so a
    reused pid is not taken for the sweep process that owned a trial."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_id() -> str:
    """This process as a trial owner: host, pid and start time."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def owner_is_dead(owner: str) -> bool:
    """Whether the owner string names a process on this host that no longer runs."""
    try:
        host, pid_text, start = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return False  # another machine's: its heartbeat tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return bool(start) and _process_start(pid) not in ("", start)


class _Heartbeats:
    """Record a heartbeat for every trial this process runs, every ``interval`` seconds."""

    def __init__(self, storage: Any, interval: int) -> None:
        self.storage = storage
        self.interval = interval
        self.trial_ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="optuna-heartbeat", daemon=True)
        self.thread.start()

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)
        with self.lock:
            self.trial_ids.add(trial_id)

    def remove(self, trial_id: int) -> None:
        with self.lock:
            self.trial_ids.discard(trial_id)

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                ids = list(self.trial_ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # a busy database: the next beat tries again
                    log.debug("heartbeat of trial %s failed: %s", trial_id, exc)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class OptunaSweeperImpl(Sweeper):
    """Ask-and-tell loop over a persistent Optuna study (see the module docstring)."""

    def __init__(
        self,
        direction: str,
        study_name: str | None,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        sampler: Any,
        pruner: Any,
        heartbeat_interval: int,
        grace_period: int,
        max_failure_rate: float,
        params: Any,
    ) -> None:
        if str(direction) not in ("minimize", "maximize"):
            raise ConfigError(
                f"hydra.sweeper.direction={direction!r}; expected minimize or maximize "
                "(litseg sets it from monitor.mode: max or min)"
            )
        for key, value, least in (
            ("n_trials", n_trials, 1),
            ("n_jobs", n_jobs, 1),
            ("heartbeat_interval", heartbeat_interval, 1),
        ):
            if not isinstance(value, int) or value < least:
                raise ConfigError(f"hydra.sweeper.{key}={value!r}; expected an integer >= {least}")
        if not isinstance(grace_period, int) or grace_period <= heartbeat_interval:
            raise ConfigError(
                f"hydra.sweeper.grace_period={grace_period!r}; expected an integer above "
                f"heartbeat_interval ({heartbeat_interval})"
            )
        if not 0.0 <= float(max_failure_rate) <= 1.0:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={max_failure_rate}; expected 0 to 1")
        self.direction = str(direction)
        self.study_name = study_name
        self.storage_url = storage
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler_spec = _plain(sampler) or {"name": "tpe"}
        self.pruner_spec = _plain(pruner) or {"name": "median"}
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.max_failure_rate = float(max_failure_rate)
        self.params = _plain(params) or {}
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.job_idx = 0

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()

    # -- the study ----------------------------------------------------------------------

    def _open_study(self, sampler: Any) -> tuple[Any, Any]:
        optuna = import_optuna()
        url = self.storage_url or f"sqlite:///{self.sweep_dir / DEFAULT_DB}"
        self.storage_url = url
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        # heartbeat-stale trials (their sweep process on another machine went silent) are
        # asked again with their parameters
        with heartbeat_warnings_off():
            storage = open_storage(url, self.heartbeat_interval, self.grace_period, self._retry)
        name = self.study_name or "litseg"
        self.study_name = name
        try:
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                sampler=sampler,
                pruner=make_pruner(self.pruner_spec),
                direction=self.direction,
                load_if_exists=True,
            )
        except optuna.exceptions.OptunaError as exc:
            raise ConfigError(f"hydra.sweeper.study_name={name}: {exc}") from exc
        if study.direction.name.lower() != self.direction:
            raise ConfigError(
                f"Optuna study {name!r} in {_safe_url(url)} was created to "
                f"{study.direction.name.lower()}, not {self.direction}; choose another "
                "hydra.sweeper.study_name or the study's monitor.mode"
            )
        return study, storage

    def _retry(self, study: Any, frozen: Any) -> None:
        """Ask again, with its parameters, for a trial whose sweep process died."""
        study.enqueue_trial(
            dict(frozen.params), user_attrs={RETRY_OF: frozen.number}, skip_if_exists=False
        )
        log.warning(
            "Trial %d was left running by a stopped sweep; it is failed and asked again",
            frozen.number,
        )

    def _reclaim_dead_trials(self, study: Any, storage: Any) -> None:
        """Fail (and ask again for) running trials whose sweep process is gone."""
        optuna = import_optuna()
        with heartbeat_warnings_off():
            optuna.storages.fail_stale_trials(study)
        mine = owner_id()
        for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            owner = frozen.user_attrs.get(OWNER, "")
            if owner == mine or not owner_is_dead(owner):
                continue
            try:
                trial_id = self._trial_id(storage, study, frozen.number)
                if not storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another sweep process failed it first
            self._retry(study, frozen)

    @staticmethod
    def _trial_id(storage: Any, study: Any, number: int) -> int:
        study_id = storage.get_study_id_from_name(study.study_name)
        return storage.get_trial_id_from_study_id_trial_number(study_id, number)

    @staticmethod
    def counts(trials: Sequence[Any]) -> list[Any]:
        """Which trials take a place among ``n_trials``: not the failed ones left by a stopped
        sweep (asked again) or asked beyond the budget, nor the retries waiting to be asked
        (counting those left a study whose last place went to a retry one trial short)."""
        return [t for t in trials if _counted(t)]

    # -- the loop -----------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        space, fixed = parse_search_space(
            [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        )
        for key in fixed:
            space.pop(key, None)
        if not space:
            raise ConfigError(
                "hydra.sweeper.params is empty: nothing to search (e.g. "
                "hydra.sweeper.params.optimizer.lr='tag(log, interval(1e-4, 1e-2))')"
            )
        sampler, grid_size = make_sampler(self.sampler_spec, space)
        if grid_size is not None and grid_size < self.n_trials:
            log.info("Grid of %d points: n_trials %d -> %d", grid_size, self.n_trials, grid_size)
            self.n_trials = grid_size
        study, storage = self._open_study(sampler)
        done = len(self.counts(study.get_trials(deepcopy=False)))
        log.info(
            "Optuna study %r in %s (%s, %s sampler, %s pruner): %d of %d trials there",
            self.study_name,
            _safe_url(self.storage_url),
            self.direction,
            str(self.sampler_spec.get("name", "tpe")),
            str(self.pruner_spec.get("name", "median")),
            done,
            self.n_trials,
        )
        log.info(
            "Continue it after an interruption with: hydra.sweeper.study_name=%s "
            "hydra.sweeper.storage=%s",
            self.study_name,
            _safe_url(self.storage_url),
        )
        heartbeats = _Heartbeats(storage, self.heartbeat_interval)
        distributions = {key: param.distribution for key, param in space.items()}
        try:
            while batch := self.ask_batch(study, storage, heartbeats, distributions):
                returns = self.launcher.launch(
                    [self._overrides(trial, fixed) for trial, _ in batch],
                    initial_job_idx=self.job_idx,
                )
                self.job_idx += len(returns)
                failures = 0
                for (trial, trial_id), ret in zip(batch, returns, strict=True):
                    failures += self._tell(study, trial, ret)
                    heartbeats.remove(trial_id)
                if failures and failures / len(returns) > self.max_failure_rate:
                    self._raise_failures(returns)
        finally:
            heartbeats.close()
        self._write_results(study)

    def ask_batch(
        self, study: Any, storage: Any, heartbeats: _Heartbeats, distributions: dict[str, Any]
    ) -> list[tuple[Any, int]]:
        """Up to ``n_jobs`` new trials (with their ids) within ``n_trials``; [] when the study
        holds ``n_trials`` counted trials. Trials beyond it that a concurrent sweep's trials
        pushed out are failed as surplus before they run."""
        TrialState = import_optuna().trial.TrialState  # noqa: N806
        while True:
            self._reclaim_dead_trials(study, storage)
            counted = self.counts(study.get_trials(deepcopy=False))
            to_ask = min(self.n_jobs, self.n_trials - len(counted))
            if to_ask <= 0:
                return []
            batch = []
            for _ in range(to_ask):
                with heartbeat_warnings_off():
                    trial = study.ask(distributions)
                trial_id = self._trial_id(storage, study, trial.number)
                heartbeats.add(trial_id)
                trial.set_user_attr(OWNER, owner_id())
                if self._position(study, trial.number) >= self.n_trials:
                    trial.set_user_attr(SURPLUS, True)
                    study.tell(trial, state=TrialState.FAIL)
                    heartbeats.remove(trial_id)
                    continue
                batch.append((trial, trial_id))
            if batch:
                return batch

    def _position(self, study: Any, number: int) -> int:
        """How many trials that count come before trial ``number``."""
        trials = study.get_trials(deepcopy=False)
        return sum(1 for t in trials if t.number < number and _counted(t))

    def _overrides(self, trial: Any, fixed: dict[str, str]) -> list[str]:
        """The job's overrides: sampled parameters, fixed ones, and where its trial lives."""
        overrides = [f"{k}={format_value(v)}" for k, v in trial.params.items()]
        overrides += [f"{k}={v}" for k, v in fixed.items()]
        env = {
            ENV_STUDY: str(self.study_name),
            ENV_STORAGE: str(self.storage_url),
            ENV_TRIAL: str(trial.number),
            ENV_PRUNER: json.dumps(self.pruner_spec),
        }
        overrides += [f"++hydra.job.env_set.{k}={quote(v)}" for k, v in env.items()]
        # the job's folder is named after the trial: unique across resumed and shared sweeps
        overrides.append(f"hydra.sweep.subdir={trial.number}")
        return overrides

    def _tell(self, study: Any, trial: Any, ret: JobReturn) -> int:
        """Tell the study how the trial's job ended; 1 when it failed, else 0."""
        optuna = import_optuna()
        TrialState = optuna.trial.TrialState  # noqa: N806
        if ret.status == JobStatus.FAILED:  # the job raised; Hydra keeps the exception
            exc = ret._return_value
            if getattr(exc, "status", None) == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
                log.info("Trial %d pruned", trial.number)
                return 0
            trial.set_user_attr(ERROR, f"{type(exc).__name__}: {exc}"[:1000])
            study.tell(trial, state=TrialState.FAIL)
            log.warning("Trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
            return 1
        value = ret._return_value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            trial.set_user_attr(ERROR, f"the job returned {value!r}, not a finite number")
            study.tell(trial, state=TrialState.FAIL)
            log.warning("Trial %d failed: the job returned %r", trial.number, value)
            return 1
        study.tell(trial, number)
        log.info("Trial %d finished: %s", trial.number, number)
        return 0

    def _raise_failures(self, returns: list[JobReturn]) -> None:
        log.error(
            "Too many failed trials in a batch (hydra.sweeper.max_failure_rate=%s)",
            self.max_failure_rate,
        )
        for ret in returns:
            ret.return_value  # noqa: B018 - re-raises the job's exception, with its traceback

    def _write_results(self, study: Any) -> None:
        """optimization_results.yaml in the sweep folder: the best trial and the counts."""
        optuna = import_optuna()
        states = [t.state for t in self.counts(study.get_trials(deepcopy=False))]
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": self.study_name,
            "storage": _safe_url(str(self.storage_url)),
            "direction": self.direction,
            "n_trials": len(states),
            "complete": states.count(optuna.trial.TrialState.COMPLETE),
            "pruned": states.count(optuna.trial.TrialState.PRUNED),
            "failed": states.count(optuna.trial.TrialState.FAIL),
            "running": states.count(optuna.trial.TrialState.RUNNING),
        }
        try:
            best = study.best_trial
        except ValueError:
            log.warning("No trial of study %r completed", self.study_name)
        else:
            results.update(
                best_trial=best.number, best_params=dict(best.params), best_value=best.value
            )
            log.info("Best trial %d: %s = %s", best.number, best.params, best.value)
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")


def _counted(frozen: Any) -> bool:
    """Whether a trial takes a place among n_trials (see ``OptunaSweeperImpl.counts``)."""
    if frozen.state.name == "WAITING":  # a retry not asked yet: it takes its place when asked
        return False
    if frozen.state.name != "FAIL":
        return True
    return ERROR in frozen.user_attrs


def _plain(node: Any) -> Any:
    """A plain dict from a DictConfig (resolved), or the value itself."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node) if node is not None else None
