"""``ckpt_path=<checkpoint | run dir | last | auto>``: find the checkpoint a run resumes from.

``last`` and ``auto`` search the experiment's runs newest first and take the first
last-checkpoint that loads and whose stored model and data fit this run; a corrupt or
foreign newer file is passed over with a warning that says why. ``auto`` starts fresh when
nothing fits, so a requeue script can always pass it.

:func:`checkpoint_file` is the one rule every entry point uses for a run directory: train.py
resumes from its last checkpoint, eval.py, predict.py and export take its best.
"""

import json
import logging
from pathlib import Path
from typing import Any

import torch

from litseg.callbacks import CONFIG_KEY
from litseg.errors import ConfigError

log = logging.getLogger(__name__)
LAST = "last.ckpt"
SEARCHES = ("last", "auto")
# model settings that change no weight shape: a resume may differ in them
IGNORED_MODEL_KEYS = ("pretrained", "weights_path", "weights_backbone")
DATA_KEYS = ("task", "num_classes", "in_channels")


def last_checkpoint(run_dir: Path) -> Path | None:
    """``<run_dir>/checkpoints/last.ckpt`` (or the newest ``last*.ckpt`` there), if any."""
    folder = run_dir / "checkpoints"
    if (folder / LAST).is_file():
        return folder / LAST
    found = sorted(folder.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _summary_best(run_dir: Path) -> str | None:
    """The file name of the best checkpoint a run's summary.json records, if readable.

    summary.json is data: only its file name is used, to pick among the run's own files.
    """
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    best = summary.get("best_checkpoint") if isinstance(summary, dict) else None
    return Path(best).name if isinstance(best, str) and best else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The best checkpoint of a run directory: the one ``checkpoints/*.ckpt`` besides
    ``last*.ckpt``, or among several the one its summary.json names; None when it has none.

    Several and no summary naming one of them is a ConfigError listing them.
    """
    folder = run_dir / "checkpoints"
    found = sorted(
        p for p in folder.glob("*.ckpt") if p.is_file() and not p.name.startswith("last")
    )
    if len(found) > 1:
        named = _summary_best(run_dir)
        chosen = [p for p in found if p.name == named]
        if not chosen:
            raise ConfigError(
                f"ckpt_path={run_dir} holds {len(found)} checkpoints and no summary.json naming "
                f"the best; pass one of them: {', '.join(str(p) for p in found[:4])}"
                + (", ..." if len(found) > 4 else "")
            )
        found = chosen
    return found[0] if found else None


def checkpoint_file(value: str | Path, key: str = "ckpt_path", prefer: str = "best") -> Path:
    """The checkpoint file behind ``<key>=<value>``: a file is itself; a run directory (or its
    ``checkpoints/`` folder) gives its best checkpoint (``prefer="best"``, see
    :func:`best_checkpoint`; else its last) or its last one (``prefer="last"``, what a resume
    needs). A missing path or a folder without checkpoints is a ConfigError naming ``key``.
    """
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise ConfigError(
            f"{key}={value}: no such checkpoint file or run directory; expected a .ckpt file "
            "or a run directory (logs/<task>/runs/<time>)"
        )
    if not path.is_dir():
        raise ConfigError(f"{key}={value} is not a file or folder; expected a .ckpt file")
    run_dir = (
        path.parent if path.name == "checkpoints" and not (path / "checkpoints").is_dir() else path
    )
    found = best_checkpoint(run_dir) if prefer == "best" else None
    found = found or last_checkpoint(run_dir)
    if found is None:
        wanted = "checkpoints/last.ckpt" if prefer == "last" else "checkpoints/*.ckpt"
        raise ConfigError(
            f"{key}={value} is a folder without {wanted}; expected a run directory "
            "(logs/<task>/runs/<time>) or a .ckpt file"
        )
    log.info("%s=%s is a run directory: using %s", key, value, found)
    return found


def last_checkpoints(experiment_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Every last-checkpoint of the experiment's runs and multirun jobs, newest first."""
    exclude = exclude.resolve() if exclude else None
    found = [
        p
        for p in experiment_dir.glob("**/checkpoints/last*.ckpt")
        if exclude is None or exclude not in p.resolve().parents
    ]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def newest_last_checkpoint(experiment_dir: Path, exclude: Path | None = None) -> Path | None:
    """The most recently written last-checkpoint of any run or multirun job of an experiment."""
    found = last_checkpoints(experiment_dir, exclude)
    return found[0] if found else None


def _fits(path: Path, expected: dict[str, Any] | None) -> str | None:
    """Why the checkpoint at ``path`` cannot resume this run, or None when it can."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any file at all may be passed: a text file raises KeyError
        return f"unreadable ({type(exc).__name__})"
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        return "not a Lightning checkpoint"
    if expected is None:
        return None
    stored = checkpoint.get(CONFIG_KEY) or {}
    model = {k: v for k, v in (stored.get("model") or {}).items() if k not in IGNORED_MODEL_KEYS}
    want = {k: v for k, v in (expected.get("model") or {}).items() if k not in IGNORED_MODEL_KEYS}
    if model != want:
        changed = sorted(k for k in set(model) | set(want) if model.get(k) != want.get(k))
        return f"another model (model.{', model.'.join(changed)} differ)"
    data, want_data = stored.get("data") or {}, expected.get("data") or {}
    changed = [k for k in DATA_KEYS if data.get(k) != want_data.get(k)]
    if changed:
        return f"other data (data.{', data.'.join(changed)} differ)"
    for group in ("optimizer", "scheduler"):  # their stored state only loads into the same kind
        if group not in expected:
            continue
        had = (stored.get(group) or {}).get("_target_")
        wants = (expected.get(group) or {}).get("_target_")
        if had != wants:
            return f"another {group} ({had or 'none'}, this run: {wants or 'none'})"
    return None


def find_resumable(
    experiment_dir: Path, expected: dict[str, Any] | None, exclude: Path | None = None
) -> tuple[Path | None, list[str]]:
    """The newest last-checkpoint that loads and fits, and a note for each one passed over."""
    passed: list[str] = []
    for path in last_checkpoints(experiment_dir, exclude):
        reason = _fits(path, expected)
        if reason is None:
            return path, passed
        passed.append(f"{path}: {reason}")
    return None, passed


def resolve_ckpt_path(
    value: str | None,
    log_dir: Path,
    task_name: str,
    run_dir: Path | None = None,
    expected: dict[str, Any] | None = None,
) -> str | None:
    """The checkpoint file behind ``ckpt_path``.

    ``last`` means the newest last-checkpoint under ``<log_dir>/<task_name>/`` (this run's own
    folder excluded) that loads and whose stored model and data equal ``expected`` (this
    run's resolved config); ``auto`` is the same but returns None when none fits. A folder
    means its ``checkpoints/last.ckpt``; a file is itself.
    """
    if value is None or str(value) == "":
        return None
    value = str(value)
    if value in SEARCHES:
        experiment = log_dir / task_name
        found, passed = find_resumable(experiment, expected, exclude=run_dir)
        for note in passed:
            log.warning("ckpt_path=%s: passing over %s", value, note)
        if found is not None:
            return str(found)
        if value == "auto":
            log.info("ckpt_path=auto: nothing to resume under %s; starting fresh", experiment)
            return None
        why = ""
        if passed:
            why = f" ({len(passed)} passed over: {passed[0]}{', ...' if len(passed) > 1 else ''})"
        raise ConfigError(
            f"ckpt_path=last: no resumable last checkpoint under {experiment}/**/checkpoints/"
            f"{why}; pass ckpt_path=<checkpoint file or run dir>, "
            "ckpt_path=auto to start fresh, or check task_name"
        )
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(
            f"ckpt_path={value} does not exist; expected a .ckpt file, a run directory, "
            "'last' or 'auto'"
        )
    if path.is_dir() and (path / LAST).is_file():  # a checkpoints/ folder given directly
        return str(path / LAST)
    found = checkpoint_file(path, prefer="last")
    if path.is_file():
        reason = _fits(found, None)
        if reason is not None:
            raise ConfigError(f"ckpt_path={value}: {reason}; expected a litseg .ckpt file")
    return str(found)
