"""Turn a finished run directory into a row of docs/results.json and a learning-curve picture.

    python scripts/record_result.py RUN_DIR --experiment camvid_cpu \\
        --command "python train.py experiment=camvid_cpu data.root=../shared/datasets/camvid"

The row (same fields as scripts/reproduce.py writes: command, wall time, epochs, hardware
with the CPU model and its AVX-512/bf16 flags, val metrics, per-class IoU) replaces the row
of the same experiment and hardware; the curve goes to docs/images/<experiment>_curve.png.
Then ``python scripts/results_table.py`` refreshes the README table.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

from litseg.learning_curves import plot
from litseg.results import RECIPES, make_row, update_results

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--experiment", required=True, choices=sorted(RECIPES))
    parser.add_argument("--command", required=True, help="the command that made the run")
    parser.add_argument("--note", default="", help="a sentence shown with the row")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results.json")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    summary_path = args.run_dir / "summary.json"
    if not summary_path.is_file():
        sys.exit(f"record_result.py: {summary_path} does not exist; is the run finished?")
    summary = json.loads(summary_path.read_text())
    row = make_row(
        args.experiment,
        args.run_dir,
        shlex.split(args.command),
        float(summary["duration_s"]),
        "cpu" if not (summary.get("host") or {}).get("cuda") else "cuda",
        smoke=False,
    )
    curve = plot(args.run_dir, args.images / f"{args.experiment}_curve.png")
    row["curve"] = str(curve.relative_to(ROOT)) if curve.is_relative_to(ROOT) else str(curve)
    if args.note:
        row["note"] = args.note
    update_results(args.results, [row])
    print(json.dumps({k: row[k] for k in ("experiment", "value", "also", "wall", "hardware")}))


if __name__ == "__main__":
    main()
