"""Train every full recipe through the real CLI and record each result in docs/results.json.

    python scripts/reproduce.py                            # all six on the GPU (~40 min, H100)
    python scripts/reproduce.py --only camvid_smp membrane_unet
    python scripts/reproduce.py --dry-run --device cuda    # print the commands, run nothing
    python scripts/reproduce.py --smoke --out /tmp/r.json  # the same path on the CPU, ~2 min
    make reproduce ARGS="--smoke --out /tmp/r.json"

Each recipe runs as ``python train.py experiment=<name> data.root=<data-dir>/<folder> ...``
from the repository root, in its own run folder under --runs-dir. Its summary.json gives one
row: the device named, the exact command, wall time, epochs, the best monitored val metric, the
last validation's metrics and per-class IoU. Rows are keyed by experiment + hardware: a row of
another key is never touched, one of the same key is replaced. The file is rewritten
atomically after each recipe, so a crash keeps the rows already measured. --smoke never writes
docs/results.json unless --out names it.

GPU budget: all six in about 40 minutes on one H100. An estimate: no GPU was lent when this
was written, so rerun and correct these figures once one is.

- Compute is not the limit. Forward GFLOP per image (torch.utils.flop_counter): camvid_unet
  37.8 at 320x320 crops (63.6 at 480x360), camvid_smp and camvid_cpu 17.2 (30.9),
  membrane_unet 24.1 at 256x256 (96.3 at 512x512), membrane_smp 10.6 (42.4), membrane_cpu 6.0
  (24.1); training is ~3x forward. camvid_unet: 120 epochs x 360 images x 113 GFLOP = 4.9
  PFLOP; camvid_smp 2.2, camvid_cpu 1.8, each membrane recipe < 0.4 (24 training slices an
  epoch), all validations ~1.5: ~11 PFLOP, 3-6 minutes at the 30-60 TFLOP/s that bf16
  convolutions this narrow reach on an H100.
- Overheads are the limit: 18,800 optimizer steps (CamVid 5,400 + 5,400 + 4,400, membrane
  1,200 + 1,200 + 1,800) at ~15-25 ms of Lightning, optimizer and logging each = 4-7 min;
  1,150 epochs with their validation, last.ckpt write (90-170 MB) and loader hand-over at
  ~0.5-1 s = 9-18 min; process start and dataset checks ~30 s a recipe = 3 min. CamVid decoding and
  augmentation (~6 ms an image) on 10 workers stays ahead of the GPU. Expected: 20-30 min.
- Levers: trainer=gpu with bf16-mixed (tensor cores), trainer.benchmark=true (cuDNN picks
  kernels once: the crop and validation sizes are fixed), 10 loader workers (16-core host),
  larger evaluation batches (CamVid 16, membrane 6: the metrics do not change). The training
  batch stays the recipe's (8 CamVid, 4 membrane_unet/smp/cpu): a larger one cuts
  step overhead but changes the optimisation (fewer updates at the same learning rate), and the
  estimate fits without it. ``--override data.batch_size=16`` tries it.
- A time cap per recipe (``++trainer.max_time``) bounds the worst case at 39 min of training
  plus ~3 min of starts: camvid_unet 9, camvid_smp 8, camvid_cpu 7 and each membrane recipe 5
  minutes. A capped run is recorded as "N of M (time cap)"; its schedule did not finish, so
  rerun it with --no-time-cap before quoting it as the recipe's result.
"""

import argparse
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from litseg.learning_curves import plot
from litseg.results import RECIPES, fmt_duration, make_row, update_results

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results.json"

GPU_COMMON = [
    "trainer=gpu",
    "trainer.precision=bf16-mixed",
    "trainer.benchmark=true",
    "data.num_workers=10",
]
# one epoch of two small batches and one validation batch: every code path, in seconds
SMOKE = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.check_val_every_n_epoch=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1",
    "data.crop_size=64",
    "data.batch_size=2",
    "data.eval_batch_size=1",
    "module.boundary_metric=false",
]


def default_data_dir() -> Path:
    """LITSEG_DATA_DIR when set, else ../shared/datasets beside the repository."""
    env = os.environ.get("LITSEG_DATA_DIR")
    return Path(env) if env else ROOT.parent / "shared" / "datasets"


def rel(path: Path) -> str:
    """``path`` relative to the repository root (the commands' working directory) when it lies
    inside the repository or beside it (../shared/...), else absolute."""
    path = Path(path).resolve()
    relative = os.path.relpath(path, ROOT)
    return str(path) if relative.startswith(f"..{os.sep}..") else relative


def overrides_for(
    name: str, device: str, smoke: bool, time_cap: bool, extra: list[str]
) -> list[str]:
    """The Hydra overrides after ``experiment=... data.root=...`` for one recipe."""
    recipe = RECIPES[name]
    if device == "cuda":
        out = [*GPU_COMMON, f"data.eval_batch_size={recipe.eval_batch_size}"]
        if time_cap and not smoke:
            out.append(f"++trainer.max_time=00:00:{recipe.gpu_minutes:02d}:00")
    else:
        out = ["trainer=cpu"]
    if smoke:
        out += [*SMOKE, "data.num_workers=2" if device == "cuda" else "data.num_workers=0"]
    return merge_overrides([*out, *extra])


def merge_overrides(overrides: list[str]) -> list[str]:
    """One override per key, the later winning, in first-seen order (Hydra wants no repeats)."""
    merged: dict[str, str] = {}
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        merged[key] = item
    return list(merged.values())


def command_for(name: str, data_dir: Path, run_dir: Path, overrides: list[str]) -> list[str]:
    """``python train.py ...`` for one recipe (python stands for this interpreter)."""
    root = data_dir / RECIPES[name].folder
    return [
        "python",
        "train.py",
        f"experiment={name}",
        f"data.root={rel(root)}",
        *overrides,
        f"hydra.run.dir={rel(run_dir)}",
    ]


def run_recipe(
    name: str, command: list[str], run_dir: Path, log_path: Path, timeout_s: float
) -> tuple[int, float, str]:
    """Run one recipe's command from the repository root; (exit code, wall seconds, log)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        try:
            code = subprocess.run(
                [sys.executable, *command[1:]],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
            ).returncode
        except subprocess.TimeoutExpired:
            code = 124
    wall = time.perf_counter() - started
    return code, wall, log_path.read_text(errors="replace")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny limits, CPU by default")
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), metavar="NAME",
                        help=f"recipes to run (default: all of {', '.join(RECIPES)})")  # fmt: skip
    parser.add_argument("--device", choices=["cuda", "cpu"],
                        help="default: cuda when available (cpu with --smoke)")  # fmt: skip
    parser.add_argument("--out", type=Path,
                        help="results JSON (default: docs/results.json; with --smoke "
                        "<runs-dir>/results.json)")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="folder holding camvid/ and isbi2012_membrane/ "
                        "(default: $LITSEG_DATA_DIR or ../shared/datasets)")  # fmt: skip
    parser.add_argument("--runs-dir", type=Path,
                        help="run folders go here (default: logs/reproduce/<time>)")  # fmt: skip
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a further Hydra override for every recipe (repeatable)")  # fmt: skip
    parser.add_argument("--no-time-cap", action="store_true",
                        help="no per-recipe trainer.max_time on the GPU")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.only or list(RECIPES)
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if device == "cuda" and not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            sys.exit("reproduce.py: --device cuda but no CUDA device is visible")
    missing = [
        str(args.data_dir / RECIPES[n].folder)
        for n in names
        if not (args.data_dir / RECIPES[n].folder).is_dir()
    ]
    if missing and not args.dry_run:
        sys.exit(
            f"reproduce.py: no data at {', '.join(missing)}; set --data-dir or LITSEG_DATA_DIR"
        )
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    runs_dir = (
        args.runs_dir or ROOT / "logs" / "reproduce" / f"{stamp}{'-smoke' if args.smoke else ''}"
    )
    out = args.out or (runs_dir / "results.json" if args.smoke else DEFAULT_OUT)
    if device == "cpu" and not args.smoke and not args.dry_run:
        print("note: the full recipes on a CPU take hours each; --smoke checks the path in minutes")

    failures = []
    for i, name in enumerate(names, 1):
        recipe = RECIPES[name]
        overrides = overrides_for(name, device, args.smoke, not args.no_time_cap, args.override)
        run_dir = runs_dir / name
        command = command_for(name, args.data_dir, run_dir, overrides)
        print(f"[{i}/{len(names)}] {shlex.join(command)}", flush=True)
        if args.dry_run:
            continue
        if args.smoke:
            timeout = 900.0
        elif device == "cuda" and not args.no_time_cap:
            timeout = recipe.gpu_minutes * 60 + 900.0
        else:
            timeout = None
        log_path = runs_dir / f"{name}.log"
        code, wall, log_text = run_recipe(name, command, run_dir, log_path, timeout)
        if code != 0 or not (run_dir / "summary.json").is_file():
            tail = "\n".join(log_text.splitlines()[-15:])
            print(f"    FAILED (exit {code}) after {fmt_duration(wall)}; log {log_path}:\n{tail}",
                  file=sys.stderr, flush=True)  # fmt: skip
            failures.append(name)
            continue
        try:
            row = make_row(name, run_dir, command, wall, device, args.smoke, log_text)
        except (OSError, ValueError, RuntimeError) as err:
            print(f"    FAILED: no result row from {run_dir}: {err}", file=sys.stderr, flush=True)
            failures.append(name)
            continue
        update_results(out, [row])
        try:
            plot(run_dir, run_dir / "learning_curve.png")
        except Exception as err:  # a missing plot never loses a measured row
            print(f"    (no learning curve: {err})", file=sys.stderr)
        print(
            f"    {row['metric']} {row['value']:.4f}, epochs {row['epochs']}, {row['wall']} "
            f"on {row['hardware']} -> {rel(out)}",
            flush=True,
        )
    if args.dry_run:
        return 0
    if failures:
        print(f"reproduce.py: failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    if out.resolve() == DEFAULT_OUT.resolve():
        print("now run: python scripts/results_table.py (README and docs/benchmarks.md tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
