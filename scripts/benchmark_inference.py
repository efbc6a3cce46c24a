"""Inference speed: litseg's sliding window vs MONAI's, and onnxruntime vs eager PyTorch.

    python scripts/benchmark_inference.py                   # defaults below, CPU
    python scripts/benchmark_inference.py --size 720 960 --window 256 --repeats 5

Both comparisons use one randomly initialised litseg U-Net (the default conf/model/unet.yaml
widths), the same inputs and the same thread count; runs of the two contenders alternate so
that a busy machine slows both alike. Speed depends on the weights only through their shapes,
so no training is needed. Prints a Markdown table for docs/benchmarks/inference.md.
"""

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from litseg.export import Exportable, export_model, load_exported
from litseg.inference import slide
from litseg.models.unet import UNet


def alternate(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function, run in turns after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


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
    image = torch.randn(1, 3, h, w)

    print(
        f"# {platform.processor() or platform.machine()}, {args.threads} threads, "
        f"torch {torch.__version__}"
    )
    with torch.inference_mode():
        ours = slide(net, image, args.window, args.overlap, batch_size=args.sw_batch)
        theirs = sliding_window_inference(
            image, (args.window,) * 2, args.sw_batch, net, overlap=args.overlap, mode="gaussian"
        )
        diff = (ours - theirs).abs().max().item()
        times = alternate(
            {
                "litseg slide": lambda: slide(
                    net, image, args.window, args.overlap, batch_size=args.sw_batch
                ),
                "MONAI sliding_window_inference": lambda: sliding_window_inference(
                    image,
                    (args.window,) * 2,
                    args.sw_batch,
                    net,
                    overlap=args.overlap,
                    mode="gaussian",
                ),
            },
            args.repeats,
        )
    print(
        f"\n## Sliding window: one {h}x{w} image, window {args.window}, overlap "
        f"{args.overlap}, gaussian, {args.sw_batch} windows per pass\n"
    )
    print(f"max |litseg - MONAI| = {diff:.2e}\n")
    print("| implementation | median s / image | min s | images/s |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {min(ts):.3f} | {1 / med:.2f} |")

    oh, ow = args.onnx_size
    batch = torch.randn(args.batch, 3, oh, ow)
    model = Exportable(net, stride=16).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(model, Path(tmp) / "unet.onnx", "onnx", torch.randn(1, 3, 64, 64))
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = batch.numpy()
        with torch.inference_mode():
            ref = model(batch).numpy()
        out = session.run(None, {"image": x})[0]
        diff = float(np.abs(out - ref).max())
        runner = load_exported(path, "onnx")  # what scripts/export.py checks parity with
        assert runner(x).shape == ref.shape
        with torch.inference_mode():
            times = alternate(
                {
                    "PyTorch eager (inference_mode)": lambda: model(batch),
                    "onnxruntime CPU": lambda: session.run(None, {"image": x}),
                },
                args.repeats,
            )
    print(f"\n## Whole image: batches of {args.batch} images {oh}x{ow}\n")
    print(f"max |onnxruntime - PyTorch| = {diff:.2e}\n")
    print("| runtime | median s / batch | min s | images/s |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.3f} | {min(ts):.3f} | {args.batch / med:.1f} |")


if __name__ == "__main__":
    main()
