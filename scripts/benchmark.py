"""Speed and memory of litseg measured side by side with its references, in one run.

    python scripts/benchmark.py [--quick] [--json PATH] [--device cpu|cuda]

Every ratio is measured pair by pair (A B A B ...) and the median is reported, because shared
machines are noisy. Keys (floats) written with --json:

- lightning_overhead_ratio: litseg (SegmentationModule in a Lightning Trainer, default callbacks
  and CSV logging on) training images/s over a hand-written PyTorch loop, same model, batch,
  tensors, memory layout and optimizer.
- compute_efficiency: training FLOP/s of the default U-Net (FLOPs counted with
  torch.utils.flop_counter) over the fp32 matmul FLOP/s measured in the same run.
- loader_headroom: data-loader images/s (default augmentation and worker count) over the model's
  training images/s.
- slide_vs_monai: litseg's sliding-window inference speed over MONAI's sliding_window_inference.
- onnx_vs_eager: onnxruntime CPU inference images/s over litseg's eager PyTorch path.
- unet_vs_smp: litseg's U-Net training images/s over smp's Unet of comparable parameter count.
- peak_rss_gb: peak resident memory of a default training run (a subprocess).

With --device cuda the same keys are measured on the GPU (onnx_vs_eager stays on the CPU) and
the precision ladder is added: fp32, bf16-mixed, bf16-mixed + channels_last and
bf16-mixed + channels_last + torch.compile, each as ``<variant>_images_per_s``,
``<variant>_speedup`` (over fp32, pair by pair), ``<variant>_mfu`` (model FLOP/s over the
matmul FLOP/s of the variant's compute dtype, measured in the same run) and
``<variant>_peak_mem_gb``.

Also printed: the max output differences behind slide_vs_monai and onnx_vs_eager.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
from lightning import Callback
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITSEG_ROOT", str(ROOT))

Batch = dict[str, torch.Tensor]

# (name, Trainer precision, channels_last, compile): each step adds one option to the last
LADDER = [
    ("fp32", "32-true", False, False),
    ("bf16_mixed", "bf16-mixed", False, False),
    ("bf16_channels_last", "bf16-mixed", True, False),
    ("bf16_channels_last_compile", "bf16-mixed", True, True),
]


def default_config(*overrides: str):
    """conf/train.yaml composed as `python train.py` would, outputs under a temp folder."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from litseg.utils.resolvers import register_resolvers

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="litseg-bench-")
    return cfg


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work so wall-clock times cover it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def paired_median(a: Callable[[], float], b: Callable[[], float], pairs: int) -> float:
    """Median over ``pairs`` of a()/b(), run alternately so drifts hit both alike."""
    return statistics.median(a() / b() for _ in range(pairs))


def alternate(
    fns: dict[str, Callable[[], object]], repeats: int, device: str = "cpu"
) -> dict[str, list[float]]:
    """Seconds per call of each function, run in turns after one warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def pairwise_speedup(ours: list[float], theirs: list[float]) -> float:
    """Median of theirs/ours over paired timings: how many times faster ours ran."""
    return statistics.median(t / o for o, t in zip(ours, theirs, strict=True))


def real_batches(cfg, n_batches: int, batch_size: int) -> list[Batch]:
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


def in_layout(batches: list[Batch], channels_last: bool) -> list[Batch]:
    """The batches with NHWC images when ``channels_last``, as the perf callback feeds them."""
    if not channels_last:
        return batches
    fmt = torch.channels_last
    return [{**b, "image": b["image"].contiguous(memory_format=fmt)} for b in batches]


def plain_loop_ips(
    net: nn.Module, loss_fn: nn.Module, batches: list[Batch], steps: int, device: str = "cpu"
) -> float:
    """Images/s of a hand-written training loop (the reference for Lightning's overhead)."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()

    def step(batch: Batch) -> None:
        image = batch["image"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss_fn(net(image), mask).backward()
        opt.step()

    step(batches[0])
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    synchronize(device)
    return steps * batches[0]["image"].shape[0] / (time.perf_counter() - start)


class StepTimer(Callback):
    """Measures training images/s after ``warmup`` steps (compilation happens in those)."""

    def __init__(self, warmup: int = 1) -> None:
        self.warmup = warmup
        self.start = 0.0
        self.seconds = 0.0
        self.images = 0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        # global_step, not batch_idx: batch_idx restarts every epoch
        if not self.start and trainer.global_step >= self.warmup:
            synchronize(module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.start:
            self.images += batch["image"].shape[0]

    def on_train_end(self, trainer, module) -> None:
        synchronize(module.device)
        self.seconds = time.perf_counter() - self.start


def lightning_ips(
    cfg,
    net: nn.Module,
    loss_fn: nn.Module,
    batches: list[Batch],
    steps: int,
    device: str = "cpu",
    precision: str = "32-true",
    perf: Callback | None = None,
    warmup: int = 1,
) -> float:
    """Images/s of SegmentationModule in a Trainer with the default callbacks and CSV logging.

    ``perf`` replaces the config's PerformanceOptions (the precision ladder sets its own).
    """
    from torch.utils.data import DataLoader

    from litseg.callbacks import PerformanceOptions
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
    # one epoch of steps + warmup batches (cycling the same tensors), as in a real epoch where
    # per-epoch work (checkpointing, logging) is spread over many steps
    items = [
        {"image": b["image"][i], "mask": b["mask"][i]}
        for k in range(steps + warmup)
        for b in [batches[k % len(batches)]]
        for i in range(b["image"].shape[0])
    ]
    loader = DataLoader(items, batch_size=batches[0]["image"].shape[0], shuffle=False)
    timer = StepTimer(warmup)
    callbacks = [c for c in build_callbacks(cfg) if type(c).__name__ != "EarlyStopping"]
    if perf is not None:
        callbacks = [c for c in callbacks if not isinstance(c, PerformanceOptions)] + [perf]
    trainer = L.Trainer(
        max_steps=steps + warmup,
        limit_val_batches=0,
        callbacks=[*callbacks, timer],
        logger=build_loggers(cfg),
        num_sanity_val_steps=0,
        accelerator=device,
        devices=1,
        precision=precision,
        default_root_dir=cfg.paths.output_dir,
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.images / timer.seconds


def matmul_flops(
    seconds: float = 1.0, n: int = 2048, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> float:
    """Matmul FLOP/s on this device and dtype (the ceiling for the efficiency ratios)."""
    if torch.device(device).type == "cuda":
        n = max(n, 8192)  # small matmuls cannot fill a data-centre GPU
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        synchronize(device)
    return 2 * n**3 * count / (time.perf_counter() - start)


def train_step_flops(net: nn.Module, loss_fn: nn.Module, batch: Batch) -> float:
    """FLOPs of one forward + backward pass, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(net.parameters()).device
    with FlopCounterMode(display=False) as counter:
        loss_fn(net(batch["image"].to(device)), batch["mask"].to(device)).backward()
    net.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def loader_ips(cfg, images: int) -> float:
    """Images/s the default data loader (augmentation, workers) delivers."""
    from litseg.utils.instantiate import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup("fit")
    it = iter(dm.train_dataloader())
    next(it)
    seen, start = 0, time.perf_counter()
    for batch in it:
        seen += batch["image"].shape[0]
        if seen >= images:
            break
    return seen / (time.perf_counter() - start)


# Runs a command and writes its peak RSS (KiB) to argv[1]. A process's peak RSS includes the
# memory of whatever it was forked from, so the training run must not be a child of this big
# benchmark process itself: this small launcher forks it instead.
RSS_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def launch_measuring_rss(command: list[str], folder: Path) -> subprocess.Popen:
    """Start ``command`` under the RSS launcher, output into ``folder``/run.log."""
    with (folder / "run.log").open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-c", RSS_LAUNCHER, str(folder / "maxrss"), *command],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


def start_training_run(quick: bool, device: str, folder: Path) -> subprocess.Popen:
    """`python train.py` with the default config (one epoch), its peak RSS measured."""
    limit = ["trainer.max_epochs=1"]
    if quick:
        limit += [f"trainer.limit_{split}_batches=3" for split in ("train", "val", "test")]
    if device == "cuda":
        limit.append("trainer=gpu")
    command = [sys.executable, str(ROOT / "train.py"), *limit, f"hydra.run.dir={folder}/run"]
    return launch_measuring_rss(command, folder)


def peak_rss_gb(run: subprocess.Popen, folder: Path) -> float:
    """Peak resident memory (GB) of a launched run, once it has finished."""
    if run.wait() != 0:
        log = folder / "run.log"
        raise RuntimeError(
            f"{run.args[4:]} exited {run.returncode} ({log}):\n{log.read_text()[-2000:]}"
        )
    return int((folder / "maxrss").read_text()) / 1024**2  # KiB on Linux


def smp_comparison(
    batches: list[Batch], steps: int, pairs: int, device: str, channels_last: bool
) -> tuple[float, dict[str, int]]:
    """litseg U-Net vs smp Unet (resnet18 encoder) with the closest parameter count."""
    import segmentation_models_pytorch as smp

    from litseg.losses.ce import CrossEntropyLoss
    from litseg.models.unet import UNet

    def params(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    reference = smp.Unet("resnet18", encoder_weights=None, classes=4)
    width = min(range(16, 80, 4), key=lambda w: abs(params(UNet(3, 4, 4, w)) - params(reference)))
    ours = UNet(3, 4, depth=4, base_width=width)
    ours, reference = (m.to(device, memory_format=fmt) for m in (ours, reference))
    loss = CrossEntropyLoss()
    ratio = paired_median(
        lambda: plain_loop_ips(ours, loss, batches, steps, device),
        lambda: plain_loop_ips(reference, loss, batches, steps, device),
        pairs,
    )
    return ratio, {
        "litseg_unet_width": width,
        "litseg_params": params(ours),
        "smp_params": params(reference),
    }


def slide_contenders(
    net: nn.Module, image: torch.Tensor, window: int, overlap: float, sw_batch: int
) -> tuple[dict[str, Callable[[], torch.Tensor]], float]:
    """litseg's slide and MONAI's sliding_window_inference on one model and image, and their
    max output difference (call under torch.inference_mode)."""
    from monai.inferers import sliding_window_inference

    from litseg.inference import slide

    fns = {
        "litseg slide": lambda: slide(net, image, window, overlap, batch_size=sw_batch),
        "MONAI sliding_window_inference": lambda: sliding_window_inference(
            image, (window, window), sw_batch, net, overlap=overlap, mode="gaussian"
        ),
    }
    ours, theirs = (fn() for fn in fns.values())
    return fns, (ours - theirs).abs().max().item()


@contextmanager
def onnx_contenders(
    net: nn.Module, batch: torch.Tensor, threads: int
) -> Iterator[tuple[dict[str, Callable[[], object]], float]]:
    """litseg's eager inference path and onnxruntime (CPU) on the exported model, and their max
    output difference (time them under torch.inference_mode)."""
    import onnxruntime as ort

    from litseg.export import Exportable, export_model
    from litseg.inference import model_stride, whole

    stride = model_stride(net)
    model = Exportable(net.eval(), stride=stride).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(model, Path(tmp) / "net.onnx", "onnx", torch.randn(1, 3, 64, 64))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = batch.numpy()
        fns = {
            "PyTorch eager (litseg whole)": lambda: whole(net, batch, stride),
            "onnxruntime CPU": lambda: session.run(None, {"image": x})[0],
        }
        with torch.inference_mode():
            eager, ort_out = (fn() for fn in fns.values())
        yield fns, float(abs(ort_out - eager.numpy()).max())


def precision_ladder(
    cfg,
    batches: list[Batch],
    steps: int,
    pairs: int,
    device: str,
    flops_per_image: float,
    matmul_seconds: float = 1.0,
    compile_kwargs: dict | None = None,
) -> dict[str, float]:
    """Training images/s, speedup over fp32, MFU and peak memory of each LADDER variant.

    Every variant trains its own copy of the default model through the Lightning Trainer; the
    rounds go fp32, bf16, ... fp32, bf16, ... so each speedup is paired with its round's fp32.
    """
    from hydra.utils import instantiate

    from litseg.callbacks import PerformanceOptions

    cuda = torch.device(device).type == "cuda"
    peaks = {
        dtype: matmul_flops(matmul_seconds, device=device, dtype=dtype)
        for dtype in (torch.float32, torch.bfloat16)
    }
    loss_fn = instantiate(cfg.loss)
    runs = {}
    for name, precision, nhwc, compiled in LADDER:
        perf = PerformanceOptions(nhwc, compiled, compile_kwargs)
        runs[name] = (instantiate(cfg.model), precision, perf, 3 if compiled else 1)
    ips: dict[str, list[float]] = {name: [] for name in runs}
    memory: dict[str, float] = {}
    for _ in range(pairs):
        for name, (net, precision, perf, warmup) in runs.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            ips[name].append(
                lightning_ips(cfg, net, loss_fn, batches, steps, device, precision, perf, warmup)
            )
            if cuda:
                memory[name] = torch.cuda.max_memory_allocated() / 1024**3
    results = {}
    for name, precision, _, _ in LADDER:
        peak = peaks[torch.bfloat16 if precision.startswith("bf16") else torch.float32]
        median = statistics.median(ips[name])
        results[f"{name}_images_per_s"] = median
        results[f"{name}_speedup"] = statistics.median(
            v / f for v, f in zip(ips[name], ips["fp32"], strict=True)
        )
        results[f"{name}_mfu"] = median * flops_per_image / peak
        if name in memory:
            results[f"{name}_peak_mem_gb"] = memory[name]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and pairs (< 60 s)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmark: --device cuda asked for, but torch sees no CUDA device")
    steps, pairs = (8, 3) if args.quick else (25, 5)
    matmul_seconds = 0.3 if args.quick else 1.0
    torch.manual_seed(0)
    started = time.time()

    from hydra.utils import instantiate

    from litseg.callbacks import channels_last_wanted

    cfg = default_config("logger=csv", "data.num_workers=0")
    nhwc = channels_last_wanted(cfg.callbacks.perf.channels_last, device)
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    batches = in_layout(real_batches(cfg, n_batches=4, batch_size=cfg.data.batch_size), nhwc)
    # the model as the default run trains it: on the device, in the perf callback's layout
    net = instantiate(cfg.model).to(device, memory_format=fmt)
    loss_fn = instantiate(cfg.loss).to(device)
    results: dict[str, float] = {}
    laps = {"setup": time.time() - started}

    def lap(part: str) -> None:
        laps[part] = time.time() - started - sum(laps.values())

    def plain() -> float:
        return plain_loop_ips(net, loss_fn, batches, steps, device)

    flops_per_image = train_step_flops(net, loss_fn, batches[0]) / batches[0]["image"].shape[0]
    loader_cfg = default_config("logger=csv")
    # one round: Lightning, the plain loop, the matmul ceiling, the loader; every ratio below
    # pairs two neighbours of one round, so A B A B ... holds with each plain run used thrice
    rounds = []
    for _ in range(pairs):
        lit = lightning_ips(cfg, net, loss_fn, batches, steps, device)
        ref = plain()
        ceiling = matmul_flops(matmul_seconds, device=device)
        loaded = loader_ips(loader_cfg, 48 if args.quick else 320)
        rounds.append((lit, ref, ceiling, loaded))
    results["lightning_overhead_ratio"] = statistics.median(lit / ref for lit, ref, _, _ in rounds)
    results["compute_efficiency"] = statistics.median(
        ref * flops_per_image / ceiling for _, ref, ceiling, _ in rounds
    )
    results["loader_headroom"] = statistics.median(loaded / ref for _, ref, _, loaded in rounds)
    train_ips = statistics.median(ref for _, ref, _, _ in rounds)
    lap("training rounds")

    ratio, smp_info = smp_comparison(
        batches, 2 if args.quick else steps // 2, 2 if args.quick else pairs, device, nhwc
    )
    results["unet_vs_smp"] = ratio
    lap("smp")

    # inference runs the model as predict.py loads it from a checkpoint: NCHW weights
    infer_net = instantiate(cfg.model).eval()
    image = torch.randn(1, 3, 360, 480, device=device)  # a CamVid frame
    with torch.inference_mode():
        fns, slide_diff = slide_contenders(infer_net.to(device), image, 128, 0.25, sw_batch=8)
        times = alternate(fns, pairs, device)
    results["slide_vs_monai"] = pairwise_speedup(*times.values())
    lap("slide")

    # the training run for peak_rss_gb overlaps the ONNX export; neither of them is timed
    rss_folder = Path(tempfile.mkdtemp(prefix="litseg-rss-"))
    run = start_training_run(args.quick, device, rss_folder)
    onnx_batch = torch.randn(4, 3, *((96, 96) if args.quick else (256, 256)))
    threads = torch.get_num_threads()
    with onnx_contenders(infer_net.cpu(), onnx_batch, threads) as (fns, onnx_diff):
        results["peak_rss_gb"] = peak_rss_gb(run, rss_folder)
        lap("export + rss")
        with torch.inference_mode():
            eager_times, ort_times = alternate(fns, pairs).values()
    results["onnx_vs_eager"] = pairwise_speedup(ort_times, eager_times)
    lap("onnx")

    if device == "cuda":
        results |= precision_ladder(
            cfg, batches, steps, pairs, device, flops_per_image, matmul_seconds
        )
        lap("precision ladder")

    where = torch.cuda.get_device_name() if device == "cuda" else f"{threads} threads"
    print(
        f"litseg benchmark ({'quick' if args.quick else 'full'}, {device}, {where}, "
        f"{time.time() - started:.0f} s)"
    )
    print(
        f"  default U-Net training ({'channels_last' if nhwc else 'NCHW'}): {train_ips:.1f} "
        f"images/s, {flops_per_image * train_ips / 1e9:.1f} GFLOP/s; smp comparison {smp_info}"
    )
    print("  seconds per part: " + ", ".join(f"{k} {v:.1f}" for k, v in laps.items()))
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
