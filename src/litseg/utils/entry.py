"""What the root entry points share: a quiet console, clean errors for bad input, and no
run folder left behind by a command that failed on its input."""

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from litseg.console import SKIP_CONSOLE, quiet_third_party_logs
from litseg.errors import LitsegError, RunStopped
from litseg.utils.run_dir import CLAIM, claimant

log = logging.getLogger("litseg")
T = TypeVar("T")
EXIT_BAD_INPUT = 2


def user_error(exc: BaseException) -> LitsegError | RunStopped | None:
    """The LitsegError or RunStopped behind ``exc`` (Hydra wraps errors raised while
    instantiating)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, LitsegError | RunStopped):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def run_reporting_errors(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run ``fn(cfg)``; a bad-input error becomes one clear line and exit status 2, a stopped
    run (interrupted, diverged) one line and its own exit status (128+signal, 3).

    In a multirun the error is re-raised so Hydra records the failed job and its overrides.
    Other libraries' INFO lines and known unactionable warnings are kept off the console
    (:func:`litseg.console.quiet_third_party_logs`); a run folder that holds nothing but what
    Hydra wrote before the error is removed.
    """
    quiet_third_party_logs()
    try:
        return fn(cfg)
    except Exception as exc:
        err = user_error(exc)
        if err is None:
            raise
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if multirun:
            raise err from None
        if isinstance(err, RunStopped):
            print(f"litseg: {err.status}: {err}", file=sys.stderr)
            sys.exit(err.exit_code)
        # the log file keeps the error; the console shows it once, on stderr
        log.error("%s: %s", type(err).__name__, err, extra={SKIP_CONSOLE: True})
        print(f"litseg: error: {err}", file=sys.stderr)
        remove_unused_run_dir()
        sys.exit(EXIT_BAD_INPUT)


# What Hydra and litseg put in a run folder before the task runs: the folder holds no results.
STARTUP_FILES = (".hydra", CLAIM)


def remove_unused_run_dir() -> bool:
    """Remove this run's folder when it holds only what was written at start-up.

    Only a single run's folder that this process claimed (its ``.litseg-claim`` names this
    pid) and that holds nothing besides ``.hydra/``, the claim and the job's log file; then
    the ``runs/`` folder above it and its task folder when that leaves them empty. Returns
    whether the run folder was removed.
    """
    if not HydraConfig.initialized():
        return False
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.RUN or not hydra_cfg.get("output_subdir"):
        return False
    run_dir = os.path.abspath(hydra_cfg.runtime.output_dir)
    if os.path.abspath(hydra_cfg.run.dir) != run_dir or run_dir == os.getcwd():
        return False
    try:
        names = {n for n in os.listdir(run_dir) if not n.endswith(".log")}  # the job's log
    except OSError:
        return False
    if not names <= set(STARTUP_FILES) or f"pid {os.getpid()} " not in claimant(
        Path(run_dir) / CLAIM
    ):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    runs = os.path.dirname(run_dir)
    if os.path.basename(runs) == "runs":  # logs/<task>/runs, then logs/<task>, when empty
        for folder in (runs, os.path.dirname(runs)):
            try:
                os.rmdir(folder)
            except OSError:
                break
    return not os.path.exists(run_dir)


def monitored_value(result: dict[str, Any]) -> float | None:
    """The number a sweeper optimises: the best monitored score, else its last value."""
    if result.get("best_score") is not None:
        return result["best_score"]
    return result.get("metrics", {}).get(result.get("monitor", ""))
