"""A run's learning curves in one PNG: loss, the monitored val metric, the learning rate.

Reads every metrics.csv that Lightning's CSVLogger wrote in the run (``csv/metrics.csv`` and
``csv/version_*/metrics.csv``; older files first, so a later file's value wins where two give
the same step or epoch). The monitored metric is ``monitor.metric`` from ``.hydra/config.yaml``
when the run has one, else val/mIoU, else val/dice. The x axis is epochs: epoch-level values
sit at the end of their epoch, per-step values at their fraction of it. Drawn by
``scripts/plot_run.py``, ``scripts/reproduce.py`` and ``scripts/record_result.py``.
"""

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FALLBACK_MONITORS = ("val/mIoU", "val/dice")


class RunError(Exception):
    """The run directory cannot be plotted; the message says why in one line."""


@dataclass
class Metrics:
    """Logged values, deduplicated: ``by_step[name][step]`` and ``by_epoch[name][epoch]``."""

    by_step: dict[str, dict[int, float]] = field(default_factory=dict)
    by_epoch: dict[str, dict[int, float]] = field(default_factory=dict)
    epoch_end: dict[int, int] = field(default_factory=dict)  # epoch -> its last step
    files: list[Path] = field(default_factory=list)

    def names(self) -> set[str]:
        return set(self.by_step) | set(self.by_epoch)


def metric_files(run_dir: Path) -> list[Path]:
    """The run's CSVLogger files, oldest first (a resumed run's later file wins)."""
    csv_dir = run_dir / "csv"
    found = [csv_dir / "metrics.csv", *csv_dir.glob("version_*/metrics.csv")]
    files = [p for p in found if p.is_file() and p.stat().st_size > 0]
    return sorted(set(files), key=lambda p: (p.stat().st_mtime, str(p)))


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_metrics(files: Iterable[Path]) -> Metrics:
    """Parse CSVLogger files into per-step and per-epoch series.

    ``*_step`` columns and ``lr-*`` columns are per step; a value on a row without an epoch is
    per step too; everything else is per epoch.
    """
    metrics = Metrics()
    for path in files:
        metrics.files.append(path)
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                step, epoch = _number(row.get("step")), _number(row.get("epoch"))
                if step is not None and epoch is not None:
                    e, s = int(epoch), int(step)
                    metrics.epoch_end[e] = max(metrics.epoch_end.get(e, s), s)
                for name, text in row.items():
                    if name in ("step", "epoch") or name is None:
                        continue
                    value = _number(text)
                    if value is None:
                        continue
                    per_step = name.endswith("_step") or name.startswith("lr-") or epoch is None
                    if per_step and step is not None:
                        metrics.by_step.setdefault(name, {})[int(step)] = value
                    elif epoch is not None:
                        metrics.by_epoch.setdefault(name, {})[int(epoch)] = value
    return metrics


def read_monitor(run_dir: Path) -> tuple[str | None, str]:
    """``(monitor.metric, monitor.mode)`` from .hydra/config.yaml; (None, "max") without one."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return None, "max"
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    metric = OmegaConf.select(cfg, "monitor.metric", throw_on_resolution_failure=False)
    mode = OmegaConf.select(cfg, "monitor.mode", throw_on_resolution_failure=False)
    return (str(metric) if metric else None), str(mode or "max")


def choose_monitor(metrics: Metrics, configured: str | None) -> str | None:
    """The configured monitor when it was logged, else val/mIoU, else val/dice, else None."""
    for name in (configured, *FALLBACK_MONITORS):
        if name and metrics.by_epoch.get(name):
            return name
    return None


def task_name(run_dir: Path) -> str | None:
    """The run's ``task_name`` from .hydra/config.yaml (the plot's title), else None."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    from omegaconf import OmegaConf

    name = OmegaConf.select(OmegaConf.load(path), "task_name", throw_on_resolution_failure=False)
    return str(name) if name else None


class EpochAxis:
    """Maps an optimizer step count to a (fractional) epoch, from each epoch's last step."""

    def __init__(self, epoch_end: dict[int, int]) -> None:
        steps, epochs = [0.0], [0.0]
        for e in sorted(epoch_end):
            end = epoch_end[e] + 1.0  # steps done when epoch e ends
            if end > steps[-1]:
                steps.append(end)
                epochs.append(e + 1.0)
        self.steps, self.epochs = np.array(steps), np.array(epochs)

    def __call__(self, done_steps: Iterable[float]) -> np.ndarray:
        x = np.asarray(list(done_steps), dtype=float)
        if len(self.steps) < 2:
            return x
        inside = np.interp(x, self.steps, self.epochs)
        # beyond the last known epoch end: carry on at the last epoch's rate
        rate = (self.epochs[-1] - self.epochs[-2]) / (self.steps[-1] - self.steps[-2])
        return np.where(x > self.steps[-1], self.epochs[-1] + (x - self.steps[-1]) * rate, inside)


def _log_if_wide(ax: "Axes", values: list[float], ratio: float) -> None:
    positive = [v for v in values if v > 0]
    if positive and len(positive) == len(values) and max(positive) / min(positive) > ratio:
        ax.set_yscale("log")


def plot(run_dir: Path, out: Path) -> Path:
    """Write the learning-curve PNG of ``run_dir`` to ``out``; raise RunError when impossible."""
    import matplotlib

    matplotlib.use("Agg")  # a file is drawn, never a window
    import matplotlib.pyplot as plt

    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a directory")
    files = metric_files(run_dir)
    if not files:
        raise RunError(
            f"no metrics in {run_dir}: expected csv/metrics.csv or csv/version_*/metrics.csv "
            "(written by the CSV logger, logger=csv)"
        )
    metrics = read_metrics(files)
    configured, mode = read_monitor(run_dir)
    monitor = choose_monitor(metrics, configured)
    step_loss = next((n for n in ("train/loss_step",) if metrics.by_step.get(n)), None)
    epoch_loss = next(
        (n for n in ("train/loss_epoch", "train/loss") if metrics.by_epoch.get(n)), None
    )
    lrs = sorted(n for n in metrics.by_step if n.startswith("lr-"))
    if not (step_loss or epoch_loss or monitor):
        raise RunError(
            f"no training loss or validation metric in {', '.join(str(f) for f in files)}"
        )
    axis = EpochAxis(metrics.epoch_end)
    fig, (ax_loss, ax_val, ax_lr) = plt.subplots(1, 3, figsize=(15, 4.5))

    loss_values: list[float] = []
    if step_loss:
        series = sorted(metrics.by_step[step_loss].items())
        ys = [v for _, v in series]
        ax_loss.plot(axis(s + 1 for s, _ in series), ys, color="C0", alpha=0.3, lw=0.8,
                     label="train (per step)")  # fmt: skip
        loss_values += ys
    for name, style, label in ((epoch_loss, "o-", "train"), ("val/loss", "s--", "val")):
        series = sorted(metrics.by_epoch.get(name, {}).items()) if name else []
        if series:
            ys = [v for _, v in series]
            color = "C0" if label == "train" else "C1"
            ax_loss.plot([e + 1 for e, _ in series], ys, style, color=color, ms=3, label=label)
            loss_values += ys
    _log_if_wide(ax_loss, loss_values, 50)
    ax_loss.set(title="loss", xlabel="epoch")
    if loss_values:
        ax_loss.legend()

    if monitor:
        series = sorted(metrics.by_epoch[monitor].items())
        xs, ys = [e + 1 for e, _ in series], [v for _, v in series]
        ax_val.plot(xs, ys, "o-", color="C2", ms=3)
        best = int(np.argmin(ys) if mode == "min" else np.argmax(ys))
        ax_val.plot([xs[best]], [ys[best]], "*", color="C3", ms=12)
        ax_val.set_title(f"{monitor} (best {ys[best]:.4f} after epoch {xs[best]})")
    else:
        ax_val.set_title("no validation metric logged")
    ax_val.set_xlabel("epoch")

    if lrs:
        lr_values: list[float] = []
        for i, name in enumerate(lrs):
            series = sorted(metrics.by_step[name].items())
            ys = [v for _, v in series]
            ax_lr.plot(axis(s for s, _ in series), ys, ".-", color=f"C{4 + i}", ms=3, label=name)
            lr_values += ys
        _log_if_wide(ax_lr, lr_values, 20)
        ax_lr.legend()
        ax_lr.set_title("learning rate")
    else:
        ax_lr.set_title("no learning rate logged")
    ax_lr.set_xlabel("epoch")

    for ax in (ax_loss, ax_val, ax_lr):
        ax.grid(alpha=0.3)
    name = task_name(run_dir)
    fig.suptitle(f"{name + ': ' if name else ''}{run_dir.name}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
