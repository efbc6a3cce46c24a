"""Model sizes and CPU speeds: parameters, GFLOPs at 256x256, forward and training images/s.

Every model is built from its conf/model YAML with real Hydra composition (4 classes, RGB),
so the table shows what `python train.py model=...` trains. Usage:

    python scripts/benchmark_models.py [--size 256] [--batch 4] [--iters 3] [--threads N]
        [--layouts nchw nhwc] [--only unet fcn ...] [--markdown docs/benchmarks/models.md]

Speeds are given per memory layout: NCHW, and NHWC (channels_last), which litseg trains in on
the CPU by default (`callbacks.perf.channels_last=auto`).
"""

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.flop_counter import FlopCounterMode

from litseg.utils.resolvers import register_resolvers

ROOT = Path(__file__).resolve().parents[1]

# (label, overrides): every conf/model YAML as shipped, plus the common variants.
MODELS: list[tuple[str, list[str]]] = [
    ("unet", ["model=unet"]),
    ("unet (base_width=32)", ["model=unet", "model.base_width=32"]),
    ("fcn (fcn_resnet50)", ["model=fcn"]),
    ("deeplabv3 (resnet50)", ["model=deeplabv3"]),
    ("deeplabv3 (mobilenet_v3_large)",
     ["model=deeplabv3", "model.arch=deeplabv3_mobilenet_v3_large"]),
    ("lraspp (mobilenet_v3_large)", ["model=lraspp"]),
    ("smp Unet resnet18", ["model=smp"]),
    ("smp FPN resnet18", ["model=smp", "model.arch=FPN"]),
    ("smp DeepLabV3Plus resnet18", ["model=smp", "model.arch=DeepLabV3Plus"]),
    ("smp Segformer mit_b0", ["model=smp", "model.arch=Segformer", "model.encoder=mit_b0"]),
]  # fmt: skip


def build(overrides: list[str]) -> torch.nn.Module:
    os.environ.setdefault("LITSEG_ROOT", str(ROOT))
    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return instantiate(cfg.model)


def logits(out: torch.Tensor | dict) -> torch.Tensor:
    return out["out"] if isinstance(out, dict) else out


def gflops(net: torch.nn.Module, size: int) -> float:
    """Forward FLOPs of one 3 x size x size image (torch.utils.flop_counter), in GFLOPs."""
    net.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 1e9


LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def images_per_s(
    net: torch.nn.Module, size: int, batch: int, iters: int, train: bool, layout: str = "nchw"
) -> float:
    """Throughput of eval forward passes, or of forward + backward + SGD steps."""
    net.to(memory_format=LAYOUTS[layout])
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=LAYOUTS[layout])
    y = torch.randint(0, 4, (batch, size, size))
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)
    net.train(train)

    def step() -> None:
        if train:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(logits(net(x)), y)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad():
                net(x)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return batch * iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--only", nargs="*", help="labels starting with these words")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    speeds = [
        f"{what} img/s {lay.upper()}" for what in ("forward", "train") for lay in args.layouts
    ]
    header = (
        "| model | overrides | params (M) | GFLOPs @256 | " + " | ".join(speeds) + " |\n"
        "|---|---|---:|---:|" + "---:|" * len(speeds)
    )
    rows = []
    print(header, flush=True)
    for label, overrides in MODELS:
        if args.only and not any(label.startswith(o) for o in args.only):
            continue
        net = build(overrides)
        params = sum(p.numel() for p in net.parameters()) / 1e6
        flops = gflops(net, 256)
        ips = [
            images_per_s(net, args.size, args.batch, args.iters, train, layout)
            for train in (False, True)
            for layout in args.layouts
        ]
        row = (
            f"| {label} | `{' '.join(overrides)}` | {params:.2f} | {flops:.1f} | "
            + " | ".join(f"{v:.1f}" for v in ips)
            + " |"
        )
        rows.append(row)
        print(row, flush=True)
    if args.markdown:
        threads = torch.get_num_threads()
        note = (
            f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__}, {threads} thread(s); input {args.batch}x3x{args.size}x"
            f"{args.size}, {args.iters} timed iterations after one warm-up."
        )
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join([header, *rows, "", note, ""]))


if __name__ == "__main__":
    main()
