"""``ckpt_path=<checkpoint | run dir | last>``: find the checkpoint a run resumes from."""

from pathlib import Path

from litseg.errors import ConfigError

LAST = "last.ckpt"


def last_checkpoint(run_dir: Path) -> Path | None:
    """``<run_dir>/checkpoints/last.ckpt`` (or the newest ``last*.ckpt`` there), if any."""
    folder = run_dir / "checkpoints"
    if (folder / LAST).is_file():
        return folder / LAST
    found = sorted(folder.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def newest_last_checkpoint(experiment_dir: Path, exclude: Path | None = None) -> Path | None:
    """The most recently written last-checkpoint of any run or multirun job of an experiment."""
    exclude = exclude.resolve() if exclude else None
    found = [
        p
        for p in experiment_dir.glob("**/checkpoints/last*.ckpt")
        if exclude is None or exclude not in p.resolve().parents
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def resolve_ckpt_path(
    value: str | None, log_dir: Path, task_name: str, run_dir: Path | None = None
) -> str | None:
    """The checkpoint file behind ``ckpt_path``.

    ``last`` means the newest last-checkpoint under ``<log_dir>/<task_name>/`` (this run's own
    folder excluded); a folder means its ``checkpoints/last.ckpt``; a file is itself.
    """
    if value is None or str(value) == "":
        return None
    value = str(value)
    if value == "last":
        experiment = log_dir / task_name
        found = newest_last_checkpoint(experiment, exclude=run_dir)
        if found is None:
            raise ConfigError(
                f"ckpt_path=last: no last checkpoint under {experiment}/**/checkpoints/; "
                "pass ckpt_path=<checkpoint file or run dir>, or check task_name"
            )
        return str(found)
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
            f"ckpt_path={value} does not exist; expected a .ckpt file, a run directory or 'last'"
        )
    return str(path)
