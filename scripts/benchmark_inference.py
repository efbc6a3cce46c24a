"""Inference speed: litseg's sliding window vs MONAI's, and onnxruntime vs eager PyTorch.

    python scripts/benchmark_inference.py                   # defaults below, CPU
    python scripts/benchmark_inference.py --size 720 960 --window 256 --repeats 5

Both comparisons use one randomly initialised litseg U-Net (the default conf/model/unet.yaml
widths), the same inputs and the same thread count; runs of the two contenders alternate so
that a busy machine slows both alike (the contenders and the timing are scripts/benchmark.py's).
Speed depends on the weights only through their shapes, so no training is needed. Prints a
Markdown table for docs/benchmarks/inference.md.
"""

import argparse
import platform
import statistics

import torch
from benchmark import alternate, onnx_contenders, slide_contenders

from litseg.models.unet import UNet


def print_table(times: dict[str, list[float]], images: int, unit: str) -> None:
    """Median and best seconds per call and images/s of each contender, as Markdown."""
    print(f"| contender | median s / {unit} | min s | images/s |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {min(ts):.3f} | {images / med:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[360, 480], help="image H W")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--sw-batch", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--batch", type=int, default=4, help="images per call (ONNX part)")
    parser.add_argument("--onnx-size", type=int, nargs=2, default=[256, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = UNet(3, 11, depth=4, base_width=16).eval()
    h, w = args.size

    print(
        f"# {platform.processor() or platform.machine()}, {args.threads} threads, "
        f"torch {torch.__version__}"
    )
    with torch.inference_mode():
        fns, diff = slide_contenders(
            net, torch.randn(1, 3, h, w), args.window, args.overlap, args.sw_batch
        )
        times = alternate(fns, args.repeats)
    print(
        f"\n## Sliding window: one {h}x{w} image, window {args.window}, overlap "
        f"{args.overlap}, gaussian, {args.sw_batch} windows per pass\n"
    )
    print(f"max |litseg - MONAI| = {diff:.2e}\n")
    print_table(times, 1, "image")

    oh, ow = args.onnx_size
    batch = torch.randn(args.batch, 3, oh, ow)
    with onnx_contenders(net, batch, args.threads) as (fns, diff), torch.inference_mode():
        times = alternate(fns, args.repeats)
    print(f"\n## Whole image: batches of {args.batch} images {oh}x{ow}\n")
    print(f"max |onnxruntime - PyTorch| = {diff:.2e}\n")
    print_table(times, args.batch, "batch")


if __name__ == "__main__":
    main()
