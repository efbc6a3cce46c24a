"""What the root entry points share: a quiet console, clean errors for bad input, and no
run folder left behind by a command that failed on its input."""

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from litseg.console import SKIP_CONSOLE, quiet_third_party_logs
from litseg.errors import ConfigError, LitsegError, RunStopped
from litseg.runtime.run_dir import CLAIM, claimant

log = logging.getLogger("litseg")
T = TypeVar("T")
EXIT_BAD_INPUT = 2


def user_error(exc: BaseException) -> LitsegError | RunStopped | None:
    """The LitsegError or RunStopped behind ``exc`` (Hydra wraps errors raised while
    instantiating)."""
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, LitsegError | RunStopped):
            return exc
        if isinstance(exc, MissingMandatoryValue | InterpolationToMissingValueError):
            # a ??? value read while building (data=folder without data.root)
            named = re.search(r"Missing mandatory value: ([\w.\[\]-]+)", str(exc))
            key = named.group(1) if named else getattr(exc, "full_key", None) or "a value"
            return ConfigError(
                f"config key '{key}' is missing; set it on the command line (e.g. {key}=...)"
            )
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def stored_group_overrides(
    argv: Sequence[str], groups: Sequence[str], implied: Mapping[str, str] | None = None
) -> list[str]:
    """Command-line arguments with ``<group>.<key>=value`` made ``++<group>.<key>=value`` for
    each of ``groups`` that the command line does not select (``<group>=<name>``).

    eval.py takes those groups from the checkpoint, so the config Hydra composes is only a
    placeholder whose keys need not match (``data.root=`` on a shapes placeholder); the task
    then checks each key against the checkpoint's stored config and names any it lacks.
    ``implied`` selects a group when only its keys are given (``inference.tta=flip`` implies
    ``inference=whole``).
    """
    args = list(argv)
    selected = {g for g in groups if any(re.match(rf"^[+~]*{g}=", a) for a in args)}
    for group, option in (implied or {}).items():
        if any(re.match(rf"^{group}\.", a) for a in args) and not any(
            re.match(rf"^[+~]*{group}=", a) for a in args
        ):
            args.insert(0, f"{group}={option}")
    return [
        f"++{a}" if any(re.match(rf"^{g}\.[^=]+=", a) for g in groups if g not in selected) else a
        for a in args
    ]


# HYDRA_FULL_ERROR as the user set it: main_reporting_errors sets it to 1 while Hydra composes
# the config, so a mistake on the command line reaches litseg instead of Hydra's printer
_FULL_ERROR = "HYDRA_FULL_ERROR"
_user_full_error: list[str | None] = []


def hydra_error_line(exc: BaseException) -> str:
    """One line for Hydra's report of a command-line mistake (unknown key, unknown config
    option, override syntax): the key or option, what exists, and what would work."""
    from difflib import get_close_matches

    text = str(exc)
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    parent = getattr(cause, "parent_node", None)
    if key and "not in struct" in str(cause):
        name = str(key).rsplit(".", 1)[-1]
        where = str(key).rsplit(".", 1)[0] if "." in str(key) else ""
        keys = [str(k) for k in parent] if hasattr(parent, "keys") else []
        close = get_close_matches(name, keys, n=2)
        hint = f"did you mean {' or '.join(f'{where}.{c}' if where else c for c in close)}? "
        append = re.search(r"use (\+\S+)", text)
        add = f"{append.group(1)} adds a new key" if append else f"+{key}=... adds a new key"
        return f"{key}: no such key{f' in {where}' if where else ''}; {hint if close else ''}{add}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Config search path:" in lines:  # an unknown config option: drop the search path
        lines = lines[: lines.index("Config search path:")]
    out: list[str] = []
    listing = False
    for line in lines:
        if listing:
            out[-1] += (" " if out[-1].endswith(":") else ", ") + line
        else:
            out.append(line.rstrip("."))
        listing = listing or line.endswith(":")
    missing = re.search(r"Could not find '(\w+)/([^']+)'", text)
    if missing and listing:
        options = out[-1].split(":", 1)[-1].replace(",", " ").split()
        close = get_close_matches(missing.group(2), options, n=1)
        if close:
            out.append(f"did you mean {missing.group(1)}={close[0]}?")
    if cause is not None and not out[-1].startswith(str(cause).splitlines()[0]):
        out.append(str(cause).splitlines()[0])
    return "; ".join(out)


def main_reporting_errors(main: Callable[[], Any]) -> None:
    """Call a ``@hydra.main`` function; a mistake in the command line that Hydra finds while
    composing the config (unknown key or config option, bad override syntax) is one line on
    stderr and exit status 2, like litseg's own errors. ``HYDRA_FULL_ERROR=1`` shows Hydra's
    own report instead."""
    from hydra.errors import CompactHydraException

    previous = os.environ.get(_FULL_ERROR)
    if previous == "1":
        main()
        return
    _user_full_error.append(previous)
    os.environ[_FULL_ERROR] = "1"  # Hydra raises instead of printing; restored in the task
    try:
        main()
    except CompactHydraException as exc:
        print(f"litseg: error: {hydra_error_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    finally:
        _restore_full_error()


def _restore_full_error() -> None:
    """Give HYDRA_FULL_ERROR back its value from before main_reporting_errors."""
    while _user_full_error:
        previous = _user_full_error.pop()
        if previous is None:
            os.environ.pop(_FULL_ERROR, None)
        else:
            os.environ[_FULL_ERROR] = previous


def run_reporting_errors(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run ``fn(cfg)``; a bad-input error becomes one clear line and exit status 2, a stopped
    run (interrupted, diverged) one line and its own exit status (128+signal, 3).

    In a multirun the error is re-raised so Hydra records the failed job and its overrides.
    Other libraries' INFO lines and known unactionable warnings are kept off the console
    (:func:`litseg.console.quiet_third_party_logs`); a run folder that holds nothing but what
    Hydra wrote before the error is removed.
    """
    quiet_third_party_logs()
    _restore_full_error()  # the config is composed: Hydra reports the task's errors as usual
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
        # one line whatever the message holds (a library's text may span several)
        line = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
        print(f"litseg: error: {line}", file=sys.stderr)
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
    names -= _failed_before_training(Path(run_dir))
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


def _failed_before_training(run_dir: Path) -> set[str]:
    """What a run that failed on its input before its first step leaves besides the start-up
    files: a ``summary.json`` saying ``failed`` at step 0 and logger folders holding only
    ``hparams.yaml``; empty when the folder holds anything else of worth."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(summary, dict) or summary.get("status") != "failed":
        return set()
    if summary.get("global_step") or (run_dir / "checkpoints").exists():
        return set()
    loggers = {
        p.name
        for p in run_dir.iterdir()
        if p.is_dir() and p.name in ("csv", "tensorboard") and _only_hparams(p)
    }
    return {"summary.json", *loggers}


def _only_hparams(folder: Path) -> bool:
    """Whether a logger folder holds nothing but hparams.yaml files (no metrics, no events)."""
    return all(p.is_dir() or p.name == "hparams.yaml" for p in folder.rglob("*"))


def monitored_value(result: dict[str, Any]) -> float | None:
    """The number a sweeper optimises: the best monitored score, else its last value."""
    if result.get("best_score") is not None:
        return result["best_score"]
    return result.get("metrics", {}).get(result.get("monitor", ""))
