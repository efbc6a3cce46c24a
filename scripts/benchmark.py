"""Speed and memory of litseg measured side by side with its references, in one run.

    python scripts/benchmark.py [--quick] [--json PATH] [--device cpu|cuda]

Every ratio is measured pair by pair (A B A B ...) and the median is reported, because shared
machines are noisy. Keys (floats) written with --json:

- lightning_overhead_ratio: litseg (SegmentationModule in a Lightning Trainer, default callbacks
  and CSV logging on) training images/s over a hand-written PyTorch loop, same model, batch,
  tensors and optimizer.
- compute_efficiency: training FLOP/s of the default U-Net (FLOPs counted with
  torch.utils.flop_counter) over the fp32 matmul FLOP/s measured in the same run.
- loader_headroom: data-loader images/s (default augmentation and worker count) over the model's
  training images/s.
- slide_vs_monai: litseg's sliding-window inference speed over MONAI's sliding_window_inference.
- onnx_vs_eager: onnxruntime CPU inference images/s over eager PyTorch.
- unet_vs_smp: litseg's U-Net training images/s over smp's Unet of comparable parameter count.
- peak_rss_gb: peak resident memory of a default training run (a subprocess).

Also printed: the max output differences behind slide_vs_monai and onnx_vs_eager.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from lightning import Callback
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITSEG_ROOT", str(ROOT))


def default_config(*overrides: str):
    """conf/train.yaml composed as `python train.py` would, outputs under a temp folder."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="litseg-bench-")
    return cfg


def paired_median(a: Callable[[], float], b: Callable[[], float], pairs: int) -> float:
    """Median over ``pairs`` of a()/b(), run alternately so drifts hit both alike."""
    ratios = []
    for _ in range(pairs):
        ratios.append(a() / b())
    return statistics.median(ratios)


def real_batches(cfg, n_batches: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """``n_batches`` normalised batches of the default data, held in memory."""
    from litseg.utils.instantiate import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup("fit")
    ds = dm.datasets["train"]
    samples = [ds[i] for i in range(n_batches * batch_size)]
    return [
        {k: torch.stack([s[k] for s in samples[i : i + batch_size]]) for k in ("image", "mask")}
        for i in range(0, len(samples), batch_size)
    ]


def plain_loop_ips(net: nn.Module, loss_fn: nn.Module, batches, steps: int) -> float:
    """Images/s of a hand-written training loop (the reference for Lightning's overhead)."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()

    def step(batch):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(batch["image"]), batch["mask"])
        loss.backward()
        opt.step()

    step(batches[0])
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    return steps * batches[0]["image"].shape[0] / (time.perf_counter() - start)


class StepTimer(Callback):
    """Measures training images/s after the first (warm-up) step."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0
        self.images = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        # global_step, not batch_idx: batch_idx restarts every epoch
        if not self.start and trainer.global_step >= 1:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.start:
            self.images += batch["image"].shape[0]

    def on_train_end(self, trainer, module) -> None:
        self.seconds = time.perf_counter() - self.start


def lightning_ips(cfg, net: nn.Module, loss_fn: nn.Module, batches, steps: int) -> float:
    """Images/s of SegmentationModule in a Trainer with the default callbacks and CSV logging."""
    from torch.utils.data import DataLoader

    from litseg.module import SegmentationModule
    from litseg.utils.instantiate import build_callbacks, build_loggers

    module = SegmentationModule(
        net=net,
        loss=loss_fn,
        task=cfg.data.task,
        num_classes=cfg.data.num_classes,
        class_names=list(cfg.data.class_names),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
    )
    # one epoch of steps + 1 batches (cycling the same tensors), as in a real epoch where
    # per-epoch work (checkpointing, logging) is spread over many steps
    items = [
        {"image": b["image"][i], "mask": b["mask"][i]}
        for k in range(steps + 1)
        for b in [batches[k % len(batches)]]
        for i in range(b["image"].shape[0])
    ]
    loader = DataLoader(items, batch_size=batches[0]["image"].shape[0], shuffle=False)
    timer = StepTimer()
    callbacks = [c for c in build_callbacks(cfg) if type(c).__name__ != "EarlyStopping"]
    trainer = L.Trainer(
        max_steps=steps + 1,
        limit_val_batches=0,
        callbacks=[*callbacks, timer],
        logger=build_loggers(cfg),
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
        default_root_dir=cfg.paths.output_dir,
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.images / timer.seconds


def matmul_flops(seconds: float = 1.0, n: int = 2048) -> float:
    """fp32 matmul FLOP/s on this machine (the compute ceiling for the efficiency ratio)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def train_step_flops(net: nn.Module, loss_fn: nn.Module, batch) -> float:
    """FLOPs of one forward + backward pass, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        loss_fn(net(batch["image"]), batch["mask"]).backward()
    net.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def loader_ips(cfg, images: int) -> float:
    """Images/s the default data loader (augmentation, workers) delivers."""
    from litseg.utils.instantiate import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    seen, start = 0, time.perf_counter()
    for batch in it:
        seen += batch["image"].shape[0]
        if seen >= images:
            break
    return seen / (time.perf_counter() - start)


def peak_rss_gb(quick: bool) -> float:
    """Peak resident memory (GB) of `python train.py` with the default config."""
    out = tempfile.mkdtemp(prefix="litseg-rss-")
    limit = (
        ["trainer.max_epochs=1", "trainer.limit_train_batches=10"]
        if quick
        else ["trainer.max_epochs=1"]
    )
    subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *limit, f"hydra.run.dir={out}/run"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN reports the largest finished child
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2


def smp_comparison(batches, steps: int, pairs: int) -> tuple[float, dict[str, int]]:
    """litseg U-Net vs smp Unet (resnet18 encoder) with the closest parameter count."""
    import segmentation_models_pytorch as smp

    from litseg.losses.ce import CrossEntropyLoss
    from litseg.models.unet import UNet

    def params(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    reference = smp.Unet("resnet18", encoder_weights=None, classes=4)
    width = min(range(16, 80, 4), key=lambda w: abs(params(UNet(3, 4, 4, w)) - params(reference)))
    ours = UNet(3, 4, depth=4, base_width=width)
    loss = CrossEntropyLoss()
    ratio = paired_median(
        lambda: plain_loop_ips(ours, loss, batches, steps),
        lambda: plain_loop_ips(reference, loss, batches, steps),
        pairs,
    )
    return ratio, {
        "litseg_unet_width": width,
        "litseg_params": params(ours),
        "smp_params": params(reference),
    }


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Seconds per call of ``fn`` over ``repeats`` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def slide_vs_monai(net: nn.Module, quick: bool, pairs: int) -> tuple[float, float]:
    """litseg's sliding-window speed over MONAI's, and the max output difference."""
    from monai.inferers import sliding_window_inference

    from litseg.inference import slide

    size, window = ((128, 160), 64) if quick else ((360, 480), 128)
    image = torch.randn(1, 3, *size)
    net = net.eval()
    with torch.inference_mode():
        ours = lambda: slide(net, image, window, 0.25, batch_size=8)  # noqa: E731
        theirs = lambda: sliding_window_inference(  # noqa: E731
            image, (window, window), 8, net, overlap=0.25, mode="gaussian"
        )
        diff = (ours() - theirs()).abs().max().item()
        ratio = paired_median(lambda: 1 / timed(ours), lambda: 1 / timed(theirs), pairs)
    return ratio, diff


def onnx_vs_eager(net: nn.Module, quick: bool, pairs: int) -> tuple[float, float]:
    """onnxruntime images/s over eager PyTorch on the same exported model, and max diff."""
    import onnxruntime as ort

    from litseg.export import Exportable, export_model

    model = Exportable(net.eval(), stride=16).eval()
    batch = torch.randn(4, 3, *((128, 128) if quick else (256, 256)))
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(model, Path(tmp) / "unet.onnx", "onnx", torch.randn(1, 3, 64, 64))
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = batch.numpy()
        with torch.inference_mode():
            diff = float(abs(session.run(None, {"image": x})[0] - model(batch).numpy()).max())
            ratio = paired_median(
                lambda: 1 / timed(lambda: session.run(None, {"image": x})),
                lambda: 1 / timed(lambda: model(batch)),
                pairs,
            )
    return ratio, diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and pairs (< 60 s)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.device == "cuda":
        # Not built yet: no GPU was available to write and check the CUDA measurements.
        sys.exit("benchmark: --device cuda is not implemented yet; only cpu is measured")
    steps, pairs = (10, 3) if args.quick else (25, 5)
    torch.manual_seed(0)

    cfg = default_config("logger=csv", "data.num_workers=0")
    from hydra.utils import instantiate

    batches = real_batches(cfg, n_batches=4, batch_size=cfg.data.batch_size)
    net = instantiate(cfg.model)
    loss_fn = instantiate(cfg.loss)
    results: dict[str, float] = {}
    started = time.time()

    train_ips = plain_loop_ips(net, loss_fn, batches, steps)
    results["lightning_overhead_ratio"] = paired_median(
        lambda: lightning_ips(cfg, net, loss_fn, batches, steps),
        lambda: plain_loop_ips(net, loss_fn, batches, steps),
        pairs,
    )

    flops_per_image = train_step_flops(net, loss_fn, batches[0]) / batches[0]["image"].shape[0]
    efficiencies = []
    for _ in range(pairs):
        achieved = plain_loop_ips(net, loss_fn, batches, steps) * flops_per_image
        efficiencies.append(achieved / matmul_flops(0.5 if args.quick else 1.0))
    results["compute_efficiency"] = statistics.median(efficiencies)

    loader_cfg = default_config("logger=csv")
    results["loader_headroom"] = paired_median(
        lambda: loader_ips(loader_cfg, 64 if args.quick else 320),
        lambda: plain_loop_ips(net, loss_fn, batches, steps),
        pairs,
    )

    ratio, smp_info = smp_comparison(batches, 2 if args.quick else steps // 2, pairs)
    results["unet_vs_smp"] = ratio

    results["slide_vs_monai"], slide_diff = slide_vs_monai(net, args.quick, pairs)
    results["onnx_vs_eager"], onnx_diff = onnx_vs_eager(net, args.quick, pairs)
    results["peak_rss_gb"] = peak_rss_gb(args.quick)

    print(
        f"litseg benchmark ({'quick' if args.quick else 'full'}, {args.device}, "
        f"{torch.get_num_threads()} threads, {time.time() - started:.0f} s)"
    )
    print(
        f"  default U-Net training: {train_ips:.1f} images/s, "
        f"{flops_per_image * train_ips / 1e9:.1f} GFLOP/s; smp comparison {smp_info}"
    )
    print(
        f"  max |litseg slide - MONAI| = {slide_diff:.1e}, "
        f"max |onnxruntime - PyTorch| = {onnx_diff:.1e}"
    )
    print("| key | value |\n| --- | --- |")
    for key, value in results.items():
        print(f"| {key} | {value:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
