"""Draw a litseg run's learning curves into one PNG: loss, the monitored val metric, the LR.

    python scripts/plot_run.py logs/camvid_cpu/runs/<time>            # -> <run>/learning_curve.png
    python scripts/plot_run.py logs/camvid_cpu/runs/<time> --out curve.png

How the CSV logs are read and drawn: :mod:`litseg.learning_curves`.
"""

import argparse
import sys
from pathlib import Path

from litseg.learning_curves import RunError, plot


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a litseg run directory")
    parser.add_argument("--out", type=Path, help="PNG path (default: RUN_DIR/learning_curve.png)")
    args = parser.parse_args(argv)
    out = args.out or args.run_dir / "learning_curve.png"
    try:
        written = plot(args.run_dir, out)
    except RunError as err:
        sys.exit(f"plot_run.py: {err}")
    print(f"learning curves written to {written}")


if __name__ == "__main__":
    main()
