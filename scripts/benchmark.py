"""litseg benchmarks, one command: speed and memory beside the references, model sizes and
speeds, loader vs training, inference contenders. The measuring logic is litseg.bench.

    python scripts/benchmark.py compare [--quick] [--json PATH] [--device cpu|cuda] [overrides]
    python scripts/benchmark.py models [--size 256] [--batch 4] [--iters 3] [--threads N]
        [--layouts nchw nhwc] [--only unet fcn ...] [--markdown docs/benchmarks/models.md]
    python scripts/benchmark.py loader [--batches 20] [--steps 5] [overrides ...]
    python scripts/benchmark.py inference [--size H W] [--window 128] [--overlap 0.25]
        [--sw-batch 8] [--batch 4] [--onnx-size H W] [--repeats 5] [--threads N]

Without a subcommand, ``compare`` runs (``benchmark.py --quick`` as before). Every ratio is
measured pair by pair (A B A B ...) and the median reported, because shared machines are
noisy. A mistake in the arguments or overrides exits 2 with one line naming it.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from litseg.bench.tables import LAYOUTS

COMMANDS = ("compare", "models", "loader", "inference")


def compare(args: argparse.Namespace) -> None:
    """Every compare key on the CPU or GPU, as Markdown, and as JSON with --json."""
    from litseg.bench.compare import run_compare
    from litseg.errors import ConfigError

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
    report = run_compare(args.quick, args.device, tuple(args.overrides))
    print("\n".join(report.markdown()))
    if args.json:
        args.json.write_text(json.dumps(report.results, indent=2) + "\n")


def models(args: argparse.Namespace) -> None:
    """The model table, printed row by row, and written with --markdown."""
    from litseg.bench.tables import MODELS, machine_line, model_row, models_header

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    labels = [m for m in MODELS if not args.only or any(m[0].startswith(o) for o in args.only)]
    if not labels:
        from litseg.errors import ConfigError

        raise ConfigError(f"--only {' '.join(args.only)} matches no model label")
    header = models_header(args.layouts)
    print(header, flush=True)
    rows = []
    for label, overrides in labels:
        rows.append(model_row(label, overrides, args.size, args.batch, args.iters, args.layouts))
        print(rows[-1], flush=True)
    if args.markdown:
        note = (
            f"{machine_line(torch.get_num_threads())}; input {args.batch}x3x{args.size}x"
            f"{args.size}, {args.iters} timed iterations after one warm-up."
        )
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join([header, *rows, "", note, ""]))


def loader(args: argparse.Namespace) -> None:
    """Loader images/s against the model's training images/s for one composed config."""
    from litseg.bench.tables import loader_report

    print("\n".join(loader_report(args.overrides, args.batches, args.steps)))


def inference(args: argparse.Namespace) -> None:
    """Sliding window vs MONAI and onnxruntime vs eager, as Markdown tables."""
    from litseg.bench.tables import inference_report

    torch.set_num_threads(args.threads)
    lines = inference_report(
        tuple(args.size),
        args.window,
        args.overlap,
        args.sw_batch,
        args.batch,
        tuple(args.onnx_size),
        args.repeats,
        args.threads,
    )
    print("\n".join(lines))


def parser() -> argparse.ArgumentParser:
    """The command line: one subparser per benchmark, each keeping its former options."""
    top = argparse.ArgumentParser(
        prog="benchmark.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")

    p = sub.add_parser("compare", help="litseg beside its references (speed ratios, memory)")
    p.add_argument("--quick", action="store_true", help="fewer steps and pairs (< 60 s)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml")
    p.set_defaults(run=compare)

    p = sub.add_parser("models", help="size, GFLOPs and CPU images/s of every model config")
    p.add_argument("--size", type=int, default=256, help="input height and width")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--iters", type=int, default=3, help="timed iterations after one warm-up")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    p.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    p.add_argument("--only", nargs="*", help="labels starting with these words")
    p.add_argument("--markdown", type=Path, help="also write the table to this file")
    p.set_defaults(run=models)

    p = sub.add_parser("loader", help="data-loader images/s against training images/s")
    p.add_argument("--batches", type=int, default=20, help="loader batches to time")
    p.add_argument("--steps", type=int, default=5, help="training steps to time")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml")
    p.set_defaults(run=loader)

    p = sub.add_parser("inference", help="sliding window vs MONAI, onnxruntime vs eager")
    p.add_argument("--size", type=int, nargs=2, default=[360, 480], help="image H W")
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--overlap", type=float, default=0.25)
    p.add_argument("--sw-batch", type=int, default=8, help="windows per forward pass")
    p.add_argument("--batch", type=int, default=4, help="images per call (ONNX part)")
    p.add_argument("--onnx-size", type=int, nargs=2, default=[256, 256], help="H W")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.set_defaults(run=inference)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; a user mistake is one line on stderr and exit status 2."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from litseg.errors import LitsegError

    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["compare", *argv]  # the former `benchmark.py [--quick] ...`
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (LitsegError, HydraException, OmegaConfBaseException) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"benchmark {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
