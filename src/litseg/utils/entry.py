"""What the root entry points share: clean errors for bad input, and the Hydra mode."""

import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from litseg.errors import LitsegError, RunStopped

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
    """
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
        log.error("%s: %s", type(err).__name__, err)
        print(f"litseg: error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def monitored_value(result: dict[str, Any]) -> float | None:
    """The number a sweeper optimises: the best monitored score, else its last value."""
    if result.get("best_score") is not None:
        return result["best_score"]
    return result.get("metrics", {}).get(result.get("monitor", ""))
