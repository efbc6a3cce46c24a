"""``benchmark.py compare``: speed and memory of litseg side by side with its references.

Keys (floats), each a median over rounds run pair by pair:

- lightning_overhead_ratio: litseg (SegmentationModule in a Lightning Trainer, default callbacks
  and CSV logging on) training images/s over a hand-written PyTorch loop, same model, batch,
  tensors, memory layout and optimizer.
- compute_efficiency: training FLOP/s of the default U-Net (FLOPs counted with
  torch.utils.flop_counter) over the fp32 GEMM ceiling of the device (best over several matmul
  shapes, :mod:`litseg.bench.ceiling`), given as ceiling_gflops_fp32.
- loader_headroom: data-loader images/s (default augmentation and worker count) over the model's
  training images/s.
- slide_vs_monai: litseg's sliding-window inference speed over MONAI's sliding_window_inference.
- onnx_vs_eager: onnxruntime CPU inference images/s over litseg's eager PyTorch path.
- unet_vs_smp: litseg's U-Net training images/s over smp's Unet of comparable parameter count.
- peak_rss_gb: peak resident memory of a default training run (a subprocess).

On a GPU (``device="cuda"``) the same keys are measured there (onnx_vs_eager stays on the CPU)
and the precision ladder is added: fp32, bf16-mixed, bf16-mixed + channels_last and
bf16-mixed + channels_last + torch.compile, each as ``<variant>_images_per_s``,
``<variant>_speedup`` (over fp32, pair by pair), ``<variant>_mfu`` (model FLOP/s over the GEMM
ceiling of the variant's compute dtype, ceiling_gflops_fp32 or ceiling_gflops_bf16) and
``<variant>_peak_mem_gb``.
"""

import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning import Callback
from omegaconf import DictConfig
from torch import nn

from litseg.bench import ROOT, compose_train
from litseg.bench.ceiling import Ceiling, explain_ratio, measure_ceiling
from litseg.bench.contenders import onnx_contenders, slide_contenders
from litseg.bench.measure import (
    Batch,
    Loss,
    alternate,
    launch_measuring_rss,
    loader_rate,
    paired_median,
    pairwise_speedup,
    params_of,
    peak_rss_gb,
    synchronize,
    train_rate,
    train_step_flops,
)

# (name, Trainer precision, channels_last, compile): each step adds one option to the last
LADDER = [
    ("fp32", "32-true", False, False),
    ("bf16_mixed", "bf16-mixed", False, False),
    ("bf16_channels_last", "bf16-mixed", True, False),
    ("bf16_channels_last_compile", "bf16-mixed", True, True),
]


def device_label(device: str) -> str:
    """The device a figure was measured on, as a report names it."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name()
    from litseg.hardware import cpu_label

    return f"{cpu_label()}, {torch.get_num_threads()} threads"


def build_fit_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The configured data module, set up for fitting."""
    from litseg.builders import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup("fit")
    return dm


def real_batches(cfg: DictConfig, n_batches: int, batch_size: int) -> list[Batch]:
    """``n_batches`` normalised batches of the configured training data, held in memory."""
    ds = build_fit_datamodule(cfg).datasets["train"]
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
    cfg: DictConfig,
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

    from litseg.builders import build_callbacks, build_loggers
    from litseg.callbacks import PerformanceOptions
    from litseg.module import SegmentationModule

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


def start_training_run(
    quick: bool, device: str, folder: Path, overrides: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`python train.py <overrides>` for one epoch, its peak RSS measured."""
    limit = [*overrides, "trainer.max_epochs=1"]
    if quick:
        limit += [f"trainer.limit_{split}_batches=3" for split in ("train", "val", "test")]
    if device == "cuda":
        limit.append("trainer=gpu")
    command = [sys.executable, str(ROOT / "train.py"), *limit, f"hydra.run.dir={folder}/run"]
    return launch_measuring_rss(command, folder)


def smp_comparison(
    batches: list[Batch],
    steps: int,
    pairs: int,
    device: str,
    channels_last: bool,
    num_classes: int = 4,
) -> tuple[float, dict[str, int]]:
    """litseg U-Net vs smp Unet (resnet18 encoder) with the closest parameter count."""
    import segmentation_models_pytorch as smp

    from litseg.losses.ce import CrossEntropyLoss
    from litseg.models.unet import UNet

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    reference = smp.Unet("resnet18", encoder_weights=None, classes=num_classes)
    target = params_of(reference)
    width = min(range(16, 80, 4), key=lambda w: abs(params_of(UNet(3, num_classes, 4, w)) - target))
    ours = UNet(3, num_classes, depth=4, base_width=width)
    ours, reference = (m.to(device, memory_format=fmt) for m in (ours, reference))
    loss = CrossEntropyLoss()
    ratio = paired_median(
        lambda: train_rate(ours, loss, batches, steps, device),
        lambda: train_rate(reference, loss, batches, steps, device),
        pairs,
    )
    return ratio, {
        "litseg_unet_width": width,
        "litseg_params": params_of(ours),
        "smp_params": target,
    }


def precision_ladder(
    cfg: DictConfig,
    batches: list[Batch],
    steps: int,
    pairs: int,
    device: str,
    flops_per_image: float,
    ceilings: dict[torch.dtype, Ceiling],
    compile_kwargs: dict | None = None,
) -> dict[str, float]:
    """Training images/s, speedup over fp32, MFU and peak memory of each LADDER variant.

    Every variant trains its own copy of the configured model through the Lightning Trainer;
    the rounds go fp32, bf16, ... fp32, bf16, ... so each speedup is paired with its round's
    fp32. ``ceilings`` holds the GEMM ceiling of float32 and bfloat16 on ``device``.
    """
    from hydra.utils import instantiate

    from litseg.callbacks import PerformanceOptions

    cuda = torch.device(device).type == "cuda"
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
        median = statistics.median(ips[name])
        results[f"{name}_images_per_s"] = median
        results[f"{name}_speedup"] = statistics.median(
            v / f for v, f in zip(ips[name], ips["fp32"], strict=True)
        )
        results[f"{name}_mfu"] = median * flops_per_image / ceilings[compute_dtype(precision)].flops
        if name in memory:
            results[f"{name}_peak_mem_gb"] = memory[name]
    return results


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype a Trainer precision runs its matmuls and convolutions in."""
    return torch.bfloat16 if precision.startswith("bf16") else torch.float32


def ratio_notes(results: dict[str, float], ceilings: dict[torch.dtype, Ceiling]) -> list[str]:
    """One line for every ratio to a ceiling that reads above 1, saying why."""
    keyed = {"compute_efficiency": torch.float32}
    keyed |= {f"{name}_mfu": compute_dtype(precision) for name, precision, _, _ in LADDER}
    notes = (
        explain_ratio(key, results[key], ceilings[dtype])
        for key, dtype in keyed.items()
        if key in results and dtype in ceilings
    )
    return [note for note in notes if note]


@dataclass
class CompareReport:
    """What ``compare`` measured: the keys, the ceilings, and the printed context lines."""

    results: dict[str, float]
    ceilings: dict[torch.dtype, Ceiling]
    lines: list[str] = field(default_factory=list)

    def markdown(self) -> list[str]:
        """The context lines, every key as a Markdown table, then the ceilings' probes."""
        rows = ["| key | value |", "| --- | --- |"]
        rows += [f"| {key} | {value:.3f} |" for key, value in self.results.items()]
        probes = [row for c in self.ceilings.values() for row in ["", c.describe(), *c.table()]]
        return [*self.lines, *rows, *probes]


def run_compare(quick: bool, device: str, overrides: tuple[str, ...] = ()) -> CompareReport:
    """Measure every key on ``device`` ("cpu" or "cuda"); quick: fewer steps and rounds.
    ``overrides`` (Hydra, of conf/train.yaml) change the model and data measured, and the
    training run whose memory is measured; none measures the default run."""
    from hydra.utils import instantiate

    from litseg.callbacks import channels_last_wanted

    steps, pairs = (8, 3) if quick else (25, 5)
    matmul_seconds, sweep_seconds = (0.3, 0.1) if quick else (1.0, 0.5)
    torch.manual_seed(0)
    started = time.time()
    cfg = compose_train("logger=csv", "data.num_workers=0", *overrides)
    nhwc = channels_last_wanted(cfg.callbacks.perf.channels_last, device)
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    batches = in_layout(real_batches(cfg, n_batches=4, batch_size=cfg.data.batch_size), nhwc)
    # the model as the default run trains it: on the device, in the perf callback's layout
    net = instantiate(cfg.model).to(device, memory_format=fmt)
    loss_fn: Loss = instantiate(cfg.loss).to(device)
    results: dict[str, float] = {}
    laps = {"setup": time.time() - started}

    def lap(part: str) -> None:
        laps[part] = time.time() - started - sum(laps.values())

    label = device_label(device)
    images = batches[0]["image"].to(device)
    ceilings = {
        torch.float32: measure_ceiling(
            device, torch.float32, sweep_seconds, label, net, images, nhwc
        )
    }
    lap("ceiling")
    flops_per_image = train_step_flops(net, loss_fn, batches[0]) / batches[0]["image"].shape[0]
    loader_cfg = compose_train("logger=csv", *overrides)
    loader_dm = build_fit_datamodule(loader_cfg)
    loader_batches = math.ceil((48 if quick else 320) / loader_cfg.data.batch_size)
    # one round: Lightning, the plain loop, the ceiling's best GEMM, the loader; every ratio
    # pairs two neighbours of one round, so A B A B ... holds with each plain run used thrice
    rounds = []
    for _ in range(pairs):
        lit = lightning_ips(cfg, net, loss_fn, batches, steps, device)
        ref = train_rate(net, loss_fn, batches, steps, device)
        ceilings[torch.float32].retime(matmul_seconds, device)
        loaded, _ = loader_rate(loader_dm.train_dataloader(), loader_batches)
        rounds.append((lit, ref, loaded))
    ceiling = ceilings[torch.float32].flops  # the best of every GEMM timed in the run
    results["lightning_overhead_ratio"] = statistics.median(lit / ref for lit, ref, _ in rounds)
    results["compute_efficiency"] = statistics.median(
        ref * flops_per_image / ceiling for _, ref, _ in rounds
    )
    results["loader_headroom"] = statistics.median(loaded / ref for _, ref, loaded in rounds)
    train_ips = statistics.median(ref for _, ref, _ in rounds)
    lap("training rounds")

    smp_steps, smp_pairs = (2, 2) if quick else (steps // 2, pairs)
    classes = cfg.data.num_classes
    ratio, smp_info = smp_comparison(batches, smp_steps, smp_pairs, device, nhwc, classes)
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
    run = start_training_run(quick, device, rss_folder, overrides)
    onnx_batch = torch.randn(4, 3, *((96, 96) if quick else (256, 256)))
    with onnx_contenders(infer_net.cpu(), onnx_batch, torch.get_num_threads()) as (fns, onnx_diff):
        results["peak_rss_gb"] = peak_rss_gb(run, rss_folder)
        lap("export + rss")
        with torch.inference_mode():
            eager_times, ort_times = alternate(fns, pairs).values()
    results["onnx_vs_eager"] = pairwise_speedup(ort_times, eager_times)
    lap("onnx")

    if torch.device(device).type == "cuda":
        ceilings[torch.bfloat16] = measure_ceiling(
            device, torch.bfloat16, sweep_seconds, label, net, images, channels_last=True
        )
        results |= precision_ladder(cfg, batches, steps, pairs, device, flops_per_image, ceilings)
        lap("precision ladder")
    for dtype, c in ceilings.items():
        results[f"ceiling_gflops_{'bf16' if dtype == torch.bfloat16 else 'fp32'}"] = c.flops / 1e9

    lines = [
        f"litseg benchmark ({'quick' if quick else 'full'}, {device}, {label}, "
        f"{time.time() - started:.0f} s)",
        f"  {' '.join(overrides) or 'default U-Net'} training "
        f"({'channels_last' if nhwc else 'NCHW'}): {train_ips:.1f} "
        f"images/s, {flops_per_image * train_ips / 1e9:.1f} GFLOP/s; smp comparison {smp_info}",
        *(f"  {c.describe()}" for c in ceilings.values()),
        "  seconds per part: " + ", ".join(f"{k} {v:.1f}" for k, v in laps.items()),
        f"  max |litseg slide - MONAI| = {slide_diff:.1e}, "
        f"max |onnxruntime - PyTorch| = {onnx_diff:.1e}",
        *(f"  note: {note}" for note in ratio_notes(results, ceilings)),
    ]
    return CompareReport(results, ceilings, lines)
