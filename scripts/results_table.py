"""Render docs/results.json into the results tables of README.md and docs/benchmarks.md.

    python scripts/results_table.py          # rewrite both tables in place
    python scripts/results_table.py --check  # exit 1 when a table is out of date

Both documents show the same measured figures; only this script writes them.
"""

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
TARGETS = (ROOT / "README.md", ROOT / "docs" / "benchmarks.md")


def render(data: dict) -> str:
    """The Markdown tables: our measured results, then the published references."""
    columns = [
        "experiment",
        "data",
        "model",
        "loss",
        "metric",
        "value",
        "also",
        "epochs",
        "wall_time",
        "hardware",
    ]
    lines = [
        "| " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "|" + " --- |" * len(columns),
    ]
    for r in data["results"]:
        lines.append(
            f"| {r['experiment']} | {r['data']} | {r['model']} | {r['loss']} | {r['metric']} | "
            f"**{r['value']:.3f}** | {r['also']} | {r['epochs']} | {r['wall']} | {r['hardware']} |"
        )
    lines += ["", "Published references a reader would compare with (not run here):", ""]
    lines += ["| model and data | reported | source |", "| --- | --- | --- |"]
    lines += [f"| {p['what']} | {p['value']} | {p['source']} |" for p in data["published"]]
    return "\n".join(lines)


def replace_block(text: str, table: str, path: Path) -> str:
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to fill")
    return pattern.sub(lambda _: f"{BEGIN}\n{table}\n{END}", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    table = render(json.loads((ROOT / "docs" / "results.json").read_text()))
    stale = []
    for path in TARGETS:
        text = path.read_text()
        new = replace_block(text, table, path)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        sys.exit(f"out of date: {', '.join(str(p) for p in stale)}; run scripts/results_table.py")
    print("results tables " + ("checked" if args.check else "written"))


if __name__ == "__main__":
    main()
