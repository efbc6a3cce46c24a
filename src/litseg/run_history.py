"""A resumed run carries its whole history: earlier metrics rows and the runs before it."""

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import torch

from litseg.utils.io import atomic_write_text

log = logging.getLogger(__name__)
METRICS_CSV = Path("csv") / "metrics.csv"


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def _resumed_step(ckpt_path: str) -> int | None:
    try:
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        return int(state["global_step"])
    except Exception:  # noqa: BLE001 - an unreadable file just means no merge
        return None


def merge_metrics(previous_csv: Path, current_csv: Path, up_to_step: int) -> int:
    """Prepend ``previous_csv``'s rows up to ``up_to_step`` to ``current_csv``; return how many."""
    old_fields, old_rows = _rows(previous_csv)
    new_fields, new_rows = _rows(current_csv) if current_csv.is_file() else ([], [])
    kept = [r for r in old_rows if r.get("step", "").isdigit() and int(r["step"]) <= up_to_step]
    fields = old_fields + [f for f in new_fields if f not in old_fields]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows([*kept, *new_rows])
    atomic_write_text(current_csv, out.getvalue())
    return len(kept)


def carry_history(run_dir: Path, ckpt_path: str | None) -> list[dict[str, Any]]:
    """For a resumed run: merge the earlier run's metrics into this run's csv/metrics.csv
    and return the chain of earlier runs (oldest first) for summary.json."""
    if not ckpt_path:
        return []
    previous = Path(ckpt_path).resolve().parent.parent
    history: list[dict[str, Any]] = []
    summary = previous / "summary.json"
    if summary.is_file():
        try:
            earlier = json.loads(summary.read_text())
            history = list(earlier.get("history") or [])
            history.append(
                {
                    "run_dir": str(previous),
                    "status": earlier.get("status"),
                    "epochs": earlier.get("epochs"),
                    "global_step": earlier.get("global_step"),
                }
            )
        except (OSError, ValueError):
            history.append({"run_dir": str(previous), "status": None})
    else:
        history.append({"run_dir": str(previous), "status": None})
    step = _resumed_step(ckpt_path)
    if step is not None and (previous / METRICS_CSV).is_file():
        try:
            merged = merge_metrics(previous / METRICS_CSV, run_dir / METRICS_CSV, step)
        except OSError as exc:
            log.error("could not merge %s into this run's metrics: %s", previous, exc)
        else:
            log.info("csv/metrics.csv carries %d rows of %s (to step %d)", merged, previous, step)
    return history
