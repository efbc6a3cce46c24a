"""``benchmark.py models``, ``loader`` and ``inference``: Markdown tables for docs/benchmarks/.

- models: parameters, forward GFLOPs at 256x256, and forward / training images/s per memory
  layout of every conf/model config, built through real Hydra composition (4 classes, RGB).
- loader: the configured data loader's images/s against the model's training images/s; the
  loader is timed as training uses it (workers, augmentation, collation; the first batch,
  which pays for starting workers, left out).
- inference: litseg's sliding window vs MONAI's and onnxruntime vs eager PyTorch on one
  randomly initialised default U-Net (speed depends on the weights only through their shapes).
"""

import os
import statistics

import torch
import torch.nn.functional as F

from litseg.bench import compose_train
from litseg.bench.contenders import onnx_contenders, slide_contenders
from litseg.bench.measure import (
    alternate,
    forward_flops,
    forward_rate,
    loader_rate,
    params_of,
    train_rate,
)

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

LAYOUTS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def machine_line(threads: int) -> str:
    """The CPU, its cores, torch and the thread count, for a table's caption."""
    from litseg.hardware import cpu_model

    cores = os.cpu_count()
    return f"CPU: {cpu_model()}, {cores} cores, torch {torch.__version__}, {threads} thread(s)"


def models_header(layouts: list[str]) -> str:
    """The model table's header and alignment rows."""
    speeds = [f"{what} img/s {lay.upper()}" for what in ("forward", "train") for lay in layouts]
    return (
        "| model | overrides | params (M) | GFLOPs @256 | " + " | ".join(speeds) + " |\n"
        "|---|---|---:|---:|" + "---:|" * len(speeds)
    )


def model_row(
    label: str, overrides: list[str], size: int, batch: int, iters: int, layouts: list[str]
) -> str:
    """One table row: the model built from conf/model, its size, FLOPs and speeds (eval
    forward, then forward + cross-entropy + backward + SGD step, per layout)."""
    from hydra.utils import instantiate

    net = instantiate(compose_train(*overrides).model)
    params = params_of(net) / 1e6
    gflops = forward_flops(net, 256) / 1e9
    ips = []
    for train in (False, True):
        for layout in layouts:
            fmt = LAYOUTS[layout]
            net.to(memory_format=fmt)
            x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
            if train:
                y = torch.randint(0, 4, (batch, size, size))
                sgd = torch.optim.SGD(net.parameters(), lr=1e-3)
                batches = [{"image": x, "mask": y}]
                ips.append(train_rate(net, F.cross_entropy, batches, iters, optimizer=sgd))
            else:
                ips.append(forward_rate(net, x, iters))
    cells = " | ".join(f"{v:.1f}" for v in ips)
    return f"| {label} | `{' '.join(overrides)}` | {params:.2f} | {gflops:.1f} | {cells} |"


def loader_report(overrides: list[str], batches: int, steps: int) -> list[str]:
    """Loader images/s vs the model's training images/s for one composed config: the model is
    timed on one batch repeated (forward, loss, backward, its own optimizer's step)."""
    from litseg.builders import build_datamodule, build_module

    cfg = compose_train(*overrides)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    module = build_module(cfg)
    rate, images = loader_rate(datamodule.train_dataloader(), batches)
    batch = next(iter(datamodule.train_dataloader()))
    optimizer = module.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]
    if isinstance(optimizer, list | tuple):
        optimizer = optimizer[0]
    train = train_rate(module, module.loss_fn, [batch], steps, optimizer=optimizer)
    verdict = "keeps up with" if rate >= train else "is slower than (starves)"
    return [
        f"config: {' '.join(overrides) or '(defaults)'}",
        f"batch: {tuple(batch['image'].shape)}, workers: {datamodule.num_workers}, "
        f"threads: {torch.get_num_threads()}",
        f"loader: {rate:.1f} images/s over {images} images",
        f"model training: {train:.1f} images/s over {steps} steps",
        f"the loader {verdict} training ({rate / train:.1f}x)",
    ]


def contenders_table(times: dict[str, list[float]], images: int, unit: str) -> list[str]:
    """Median and best seconds per call and images/s of each contender, as Markdown."""
    rows = [f"| contender | median s / {unit} | min s | images/s |", "|---|---:|---:|---:|"]
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append(f"| {name} | {med:.3f} | {min(ts):.3f} | {images / med:.2f} |")
    return rows


def inference_report(
    size: tuple[int, int],
    window: int,
    overlap: float,
    sw_batch: int,
    batch: int,
    onnx_size: tuple[int, int],
    repeats: int,
    threads: int,
) -> list[str]:
    """Sliding window (one image) and whole-image ONNX (one batch) tables, Markdown."""
    from litseg.models.unet import UNet

    torch.manual_seed(0)
    net = UNet(3, 11, depth=4, base_width=16).eval()
    h, w = size
    lines = [f"# {machine_line(threads).removeprefix('CPU: ')}"]
    with torch.inference_mode():
        fns, diff = slide_contenders(net, torch.randn(1, 3, h, w), window, overlap, sw_batch)
        times = alternate(fns, repeats)
    lines += [
        "",
        f"## Sliding window: one {h}x{w} image, window {window}, overlap {overlap}, gaussian, "
        f"{sw_batch} windows per pass",
        "",
        f"max |litseg - MONAI| = {diff:.2e}",
        "",
        *contenders_table(times, 1, "image"),
    ]
    oh, ow = onnx_size
    images = torch.randn(batch, 3, oh, ow)
    with onnx_contenders(net, images, threads) as (fns, diff), torch.inference_mode():
        times = alternate(fns, repeats)
    return lines + [
        "",
        f"## Whole image: batches of {batch} images {oh}x{ow}",
        "",
        f"max |onnxruntime - PyTorch| = {diff:.2e}",
        "",
        *contenders_table(times, batch, "batch"),
    ]
