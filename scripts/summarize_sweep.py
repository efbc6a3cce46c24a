"""Leaderboard of a multirun: ``python scripts/summarize_sweep.py logs/train/multiruns/<time>``.

Reads every job folder's ``.hydra/overrides.yaml`` and ``summary.json`` (jobs without a summary
are listed as unfinished), ranks the completed jobs by the monitored metric (``monitor.metric``
and ``monitor.mode`` of the jobs' config, or ``--metric``/``--mode``), lists the trials an Optuna
pruner stopped after them (with their best score so far, status ``pruned``), then the jobs that
stopped otherwise or never finished, prints the table as Markdown and writes ``leaderboard.md``,
``leaderboard.csv`` and ``sweep.png`` (the metric against each swept parameter, best job
starred) into the (first) multirun folder or ``--out``. Several folders (a sweep and the one
that resumed its study) make one table; their jobs are then named ``<folder>/<job>``.
"""

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

# final metrics shown after the ranked one, when the jobs have them
SHOWN = ("val/mIoU", "val/dice", "val/pixel_acc", "val/loss", "test/mIoU", "test/dice")


def _value(text: str) -> Any:
    """An override's value as a number where it is one (for sorting and plotting)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _read_yaml(path: Path) -> Any:
    """The file's YAML, or None where it is missing or cut short."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def load_jobs(sweep_dir: Path, prefix: str = "") -> list[dict[str, Any]]:
    """One record per job folder: its number, overrides, config monitor and summary (if any);
    ``prefix`` goes before the job's name."""
    jobs = []
    for folder in sweep_dir.iterdir():
        if not (folder / ".hydra").is_dir():
            continue
        # a job killed while Hydra wrote its files has some of them, or part of one
        overrides = _read_yaml(folder / ".hydra" / "overrides.yaml")
        overrides = (
            [o for o in overrides if isinstance(o, str)] if isinstance(overrides, list) else []
        )
        config = _read_yaml(folder / ".hydra" / "config.yaml")
        config = config if isinstance(config, dict) else {}
        summary_file = folder / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
        jobs.append(
            {
                "job": prefix + folder.name,
                "overrides": dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o),
                "monitor": config.get("monitor") or {},
                "summary": summary,
            }
        )
    return sorted(jobs, key=lambda j: _job_key(j["job"]))


def _job_key(name: str) -> tuple[str, bool, int | str]:
    """Numeric job names in numeric order, within their folder."""
    folder, _, job = name.rpartition("/")
    return (folder, not job.isdigit(), int(job) if job.isdigit() else job)


def status(job: dict[str, Any]) -> str:
    """done (completed), pruned, interrupted, diverged, failed or unfinished (no summary)."""
    if job["summary"] is None:
        return "unfinished"
    value = job["summary"].get("status", "completed")
    return "done" if value == "completed" else str(value)


def swept_keys(jobs: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs, in command-line order."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job["overrides"] if k not in keys]
    return [k for k in keys if len({j["overrides"].get(k) for j in jobs}) > 1]


def score(job: dict[str, Any], metric: str) -> float | None:
    """The job's ranked number: the best monitored score when ranking by the monitor, else the
    final value of ``metric``."""
    summary = job["summary"]
    if summary is None:
        return None
    if metric == summary.get("monitor") and summary.get("best_score") is not None:
        return float(summary["best_score"])
    value = summary.get("metrics", {}).get(metric)
    return None if value is None or math.isnan(value) else float(value)


def leaderboard(
    jobs: list[dict[str, Any]], metric: str, mode: str
) -> tuple[list[str], list[list[Any]]]:
    """Header and rows: completed jobs best first, then pruned ones (best first, unranked),
    then the rest."""
    keys = swept_keys(jobs)
    shown = [
        m
        for m in SHOWN
        if m != metric and any(m in (j["summary"] or {}).get("metrics", {}) for j in jobs)
    ]
    header = ["rank", "job", *keys, f"best {metric}", *shown, "epochs", "duration_s", "status"]
    scored = [j for j in jobs if score(j, metric) is not None]
    scored.sort(key=lambda j: score(j, metric), reverse=mode == "max")
    finished = [j for j in scored if status(j) == "done"]
    pruned = [j for j in scored if status(j) == "pruned"]
    rest = [j for j in jobs if j not in finished and j not in pruned]
    rows = []
    for rank, job in enumerate([*finished, *pruned, *rest], start=1):
        summary = job["summary"] or {}
        metrics = summary.get("metrics", {})
        rows.append(
            [
                rank if job in finished else "",
                job["job"],
                *[job["overrides"].get(k, "") for k in keys],
                score(job, metric) if job in finished or job in pruned else "",
                *[metrics.get(m, "") for m in shown],
                summary.get("epochs", ""),
                summary.get("duration_s", ""),
                status(job),
            ]
        )
    return header, rows


def _cell(value: Any) -> str:
    if isinstance(value, str) and "." in value:
        value = _value(value)  # long swept floats such as Optuna's learning rates
    if isinstance(value, float):
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e3 else f"{value:.4g}"
    return str(value)


def to_markdown(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot(jobs: list[dict[str, Any]], metric: str, mode: str, path: Path) -> Path | None:
    """Scatter of ``metric`` against each swept parameter (log axis for wide positive ranges)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = swept_keys(jobs)
    done = [j for j in jobs if score(j, metric) is not None and status(j) == "done"]
    if not keys or not done:
        return None
    best = (max if mode == "max" else min)(done, key=lambda j: score(j, metric))
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        values = [_value(j["overrides"].get(key, "")) for j in done]
        ys = [score(j, metric) for j in done]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric:
            xs = [float(v) for v in values]
            if min(xs) > 0 and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
        else:
            labels = sorted({str(v) for v in values})
            xs = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, ys, alpha=0.8)
        i = done.index(best)
        ax.scatter(
            [xs[i]], [ys[i]], marker="*", s=200, color="tab:red", label=f"best (job {best['job']})"
        )
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize="small")
    fig.suptitle(f"{metric} ({mode}) over {len(done)} jobs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, nargs="+", help="multirun folder(s) (each holds 0/, 1/, ...)"
    )
    parser.add_argument("--metric", help="rank by this metric (default: the jobs' monitor.metric)")
    parser.add_argument("--mode", choices=("max", "min"), help="default: the jobs' monitor.mode")
    parser.add_argument("--out", type=Path, help="where the files go (default: sweep_dir)")
    args = parser.parse_args(argv)

    jobs = []
    for folder in args.sweep_dir:
        prefix = f"{folder.name}/" if len(args.sweep_dir) > 1 else ""
        found = load_jobs(folder, prefix) if folder.is_dir() else []
        if not found:
            print(
                f"summarize_sweep: error: no job folders (with .hydra/overrides.yaml) in {folder}",
                file=sys.stderr,
            )
            return 2
        jobs += found
    monitor = next((j["monitor"] for j in jobs if j["monitor"]), {})
    metric = args.metric or monitor.get("metric", "val/mIoU")
    mode = args.mode or monitor.get("mode", "max")
    header, rows = leaderboard(jobs, metric, mode)
    out = args.out or args.sweep_dir[0]
    out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(header, rows)
    title = ", ".join(str(f) for f in args.sweep_dir)
    (out / "leaderboard.md").write_text(f"# {title}\n\n{markdown}")
    with open(out / "leaderboard.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    figure = plot(jobs, metric, mode, out / "sweep.png")
    print(markdown)
    print(
        f"wrote {out / 'leaderboard.md'}, {out / 'leaderboard.csv'}"
        + (f", {figure}" if figure else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
