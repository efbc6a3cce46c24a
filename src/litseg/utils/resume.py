"""``ckpt_path=<checkpoint | run dir | last | auto>``: find the checkpoint a run resumes from.

``last`` and ``auto`` search the experiment's runs newest first and take the first
last-checkpoint that loads and whose stored model and data fit this run; a corrupt or
foreign newer file is passed over with a warning that says why. ``auto`` starts fresh when
nothing fits, so a requeue script can always pass it.
"""

import logging
import pickle
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
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
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
    if path.is_dir():
        found = last_checkpoint(path) or (path / LAST if (path / LAST).is_file() else None)
        if found is None:
            raise ConfigError(
                f"ckpt_path={value} is a folder without checkpoints/last.ckpt; "
                "expected a run directory or a .ckpt file"
            )
        return str(found)
    if not path.is_file():
        raise ConfigError(
            f"ckpt_path={value} does not exist; expected a .ckpt file, a run directory, "
            "'last' or 'auto'"
        )
    return str(path)
