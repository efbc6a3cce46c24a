"""Parity check of experiment=camvid_cpu: a plain-PyTorch reference beside litseg, seed by seed.

    python scripts/parity_camvid.py --seeds 0 1 --json parity.json          # the full budget
    python scripts/parity_camvid.py --epochs 1 --limit-train-batches 2 --limit-val-batches 1 \\
        --crop 64 --seeds 0                                                  # a tiny check

The reference is written here without Lightning or Hydra: smp Unet with a ResNet-18 encoder
from scratch, cross-entropy with the recipe's class weights ignoring void (11), AdamW stepped
per batch by OneCycleLR (max 3e-3, pct_start 0.3, div 25, final div 1e4, no momentum cycling), the
albumentations train pipeline of conf/augment/basic.yaml written out by hand, batch 8, bf16
autocast where the CPU computes bf16 natively (always on CUDA) and channels_last on the CPU
(what litseg's ``callbacks.perf.channels_last=auto`` does). Files are read with litseg's
CamVidDataset. Validation: the whole val split at the full 480x360 (padded by reflection to a
multiple of 32 and cropped back), IoU per class from a confusion matrix without void pixels,
NaN for a class absent from prediction and truth, mIoU their nanmean (litseg's definition).

litseg runs the same budget through its real CLI (``python train.py experiment=camvid_cpu
trainer.max_epochs=E seed=S ...``), validating once at the end as the reference does. The
table gives each seed's final val mIoU on both sides, and the spread over seeds: a gap between
the sides well inside that spread is what parity means for two stochastic trainings.

The full budget (96 epochs, two seeds) costs each side about what the recipe costs: hours per
seed on a 2-core CPU, minutes with ``--device cuda --workers 8`` (litseg then runs trainer=gpu
with bf16-mixed, the reference bf16 autocast on the GPU).
"""

import argparse
import json
import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.optim.lr_scheduler import OneCycleLR
from torch.utils.data import DataLoader

from litseg.data.datasets.camvid import CamVidDataset  # (file reading only)
from litseg.hardware import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[1]

DATA_CONF = OmegaConf.load(ROOT / "conf" / "data" / "camvid.yaml")
# the recipe's cross-entropy class weights (sky ... bicyclist), read where they are set
_WEIGHTS = OmegaConf.load(ROOT / "conf" / "experiment" / "camvid_cpu.yaml").loss.class_weights
MEAN = [float(v) for v in DATA_CONF.mean]
STD = [float(v) for v in DATA_CONF.std]
NUM_CLASSES = int(DATA_CONF.num_classes)
VOID = int(DATA_CONF.ignore_index)
CLASS_NAMES = [str(c) for c in DATA_CONF.class_names]


@dataclass(frozen=True)
class Recipe:
    """experiment=camvid_cpu as numbers (tests/test_reproduce.py checks them against conf/)."""

    epochs: int = 96
    crop: int = 320
    batch_size: int = 8
    eval_batch_size: int = 4
    workers: int = 1
    lr: float = 3.0e-3
    weight_decay: float = 1.0e-4
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1.0e4
    # cross-entropy class weights, or None for unweighted
    class_weights: tuple[float, ...] | None = (
        None if _WEIGHTS is None else tuple(float(w) for w in _WEIGHTS)
    )


RECIPE = Recipe()


def default_data_root() -> Path:
    """$LITSEG_DATA_DIR/camvid, else ../shared/datasets/camvid beside the repository."""
    base = os.environ.get("LITSEG_DATA_DIR")
    return (Path(base) if base else ROOT.parent / "shared" / "datasets") / "camvid"


class ToTensors:
    """albumentations pipeline, then CHW float image and int64 mask tensors."""

    def __init__(self, compose: A.Compose) -> None:
        self.compose = compose

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
        out = self.compose(image=image, mask=mask)
        image_t = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()
        return {
            "image": image_t,
            "mask": torch.from_numpy(np.ascontiguousarray(out["mask"])).long(),
        }


def train_pipeline(crop: int) -> A.Compose:
    """conf/augment/basic.yaml's train list, written out: flip, scale, pad, crop, colour, norm."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.RandomScale(scale_limit=(-0.25, 0.25), p=1.0),
            A.PadIfNeeded(min_height=crop, min_width=crop, border_mode=0, fill=0, fill_mask=VOID),
            A.RandomCrop(height=crop, width=crop),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
            A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0),
        ]
    )


def eval_pipeline() -> A.Compose:
    """Normalisation only: the whole frame at its own size."""
    return A.Compose([A.Normalize(mean=MEAN, std=STD, max_pixel_value=255.0)])


def padded_forward(model: torch.nn.Module, x: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    """Logits at the input's size: reflect-pad (centred) to a multiple of 32, crop back."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode="reflect")
    out = model(x)
    return out[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w] if ph or pw else out


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(C, C) counts, rows = truth, columns = prediction; void pixels left out."""
    valid = target != VOID
    index = target[valid].long() * NUM_CLASSES + pred[valid].long()
    return torch.bincount(index, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def iou_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    """IoU per class, NaN where a class is in neither prediction nor truth."""
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def run_reference(
    root: Path,
    seed: int,
    epochs: int,
    crop: int,
    device: str,
    workers: int,
    limit_train: int | None,
    limit_val: int | None,
) -> dict[str, Any]:
    """Train and validate the reference once; final val mIoU, per-class IoU, pixel acc, time."""
    started = time.perf_counter()
    seed_all(seed)
    dev = torch.device(device)
    bf16 = dev.type == "cuda" or cpu_has_native_bf16()
    nhwc = dev.type == "cpu"
    memory_format = torch.channels_last if nhwc else torch.contiguous_format

    labels = {"num_classes": NUM_CLASSES, "ignore_index": VOID}  # conf/data/camvid.yaml's
    train_set = CamVidDataset(root, "train", transform=ToTensors(train_pipeline(crop)), **labels)
    val_set = CamVidDataset(root, "val", transform=ToTensors(eval_pipeline()), **labels)
    generator = torch.Generator().manual_seed(seed)
    loader_args = {
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "pin_memory": dev.type == "cuda",
        "worker_init_fn": _seed_worker,
    }
    train_loader = DataLoader(
        train_set,
        batch_size=RECIPE.batch_size,
        shuffle=True,
        drop_last=len(train_set) > RECIPE.batch_size,
        generator=generator,
        **loader_args,
    )
    val_loader = DataLoader(val_set, batch_size=RECIPE.eval_batch_size, **loader_args)
    steps_per_epoch = (
        len(train_loader) if limit_train is None else min(limit_train, len(train_loader))
    )

    model = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=NUM_CLASSES)
    model = model.to(dev, memory_format=memory_format)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=RECIPE.lr, weight_decay=RECIPE.weight_decay
    )
    scheduler = OneCycleLR(
        optimizer,
        max_lr=RECIPE.lr,
        total_steps=epochs * steps_per_epoch,
        pct_start=RECIPE.pct_start,
        div_factor=RECIPE.div_factor,
        final_div_factor=RECIPE.final_div_factor,
        cycle_momentum=False,
    )

    def autocast() -> torch.autocast:
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

    weights = None
    if RECIPE.class_weights is not None:
        weights = torch.tensor(RECIPE.class_weights, device=dev)

    losses = []
    for _ in range(epochs):
        model.train()
        for i, batch in enumerate(train_loader):
            if i >= steps_per_epoch:
                break
            x = batch["image"].to(dev, non_blocking=True).contiguous(memory_format=memory_format)
            y = batch["mask"].to(dev, non_blocking=True)
            with autocast():
                logits = model(x)
                w = None if weights is None else weights.to(logits.dtype)
                loss = F.cross_entropy(logits, y, weight=w, ignore_index=VOID)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
    train_s = time.perf_counter() - started

    model.eval()
    cm = torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long)
    with torch.inference_mode(), autocast():
        for i, batch in enumerate(val_loader):
            if limit_val is not None and i >= limit_val:
                break
            x = batch["image"].to(dev).contiguous(memory_format=memory_format)
            pred = padded_forward(model, x).argmax(1).cpu()
            cm += confusion_matrix(pred, batch["mask"])
    iou = iou_from_confusion(cm)
    return {
        "mIoU": float(iou.nanmean()),
        "pixel_acc": float(cm.diagonal().sum() / cm.sum().clamp_min(1)),
        "per_class_iou": {n: _num(v) for n, v in zip(CLASS_NAMES, iou.tolist(), strict=True)},
        "final_train_loss": losses[-1] if losses else None,
        "steps": len(losses),
        "bf16": bf16,
        "channels_last": nhwc,
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _num(value: float | None) -> float | None:
    """Rounded, None for a missing or NaN value (litseg's summaries write NaN as null)."""
    return None if value is None or math.isnan(value) else round(value, 4)


def litseg_command(
    root: Path,
    seed: int,
    epochs: int,
    crop: int,
    device: str,
    workers: int,
    limit_train: int | None,
    limit_val: int | None,
    run_dir: Path,
) -> list[str]:
    """``python train.py experiment=camvid_cpu ...`` on the reference's budget."""
    command = [
        "python",
        "train.py",
        "experiment=camvid_cpu",
        f"data.root={os.path.relpath(root.resolve(), ROOT)}",
        f"seed={seed}",
        f"trainer.max_epochs={epochs}",
        f"trainer.check_val_every_n_epoch={epochs}",  # validate once, at the end
        "trainer.num_sanity_val_steps=0",
        f"data.crop_size={crop}",
        f"data.num_workers={workers}",
        "test=false",
    ]
    if device == "cuda":
        command += ["trainer=gpu", "trainer.precision=bf16-mixed"]
    if limit_train is not None:
        command.append(f"trainer.limit_train_batches={limit_train}")
    if limit_val is not None:
        command.append(f"trainer.limit_val_batches={limit_val}")
    return [*command, f"hydra.run.dir={os.path.relpath(run_dir.resolve(), ROOT)}"]


def run_litseg(command: list[str], log_path: Path, run_dir: Path) -> dict[str, Any]:
    """Run litseg's CLI from the repository root; its final val metrics and wall time."""
    started = time.perf_counter()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    with log_path.open("w") as log:
        code = subprocess.run(
            [sys.executable, *command[1:]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    summary_path = run_dir / "summary.json"
    if code != 0 or not summary_path.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"litseg run failed (exit {code}); log {log_path}:\n{tail}")
    metrics = json.loads(summary_path.read_text())["metrics"]
    return {
        "mIoU": metrics["val/mIoU"],
        "pixel_acc": metrics.get("val/pixel_acc"),
        "per_class_iou": {n: _num(metrics.get(f"val/IoU_{n}")) for n in CLASS_NAMES},
        "final_train_loss": metrics.get("train/loss_epoch"),
        "command": shlex.join(command),
        "run_dir": os.path.relpath(run_dir.resolve(), ROOT),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value) and max - min."""
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "spread": max(values) - min(values),
    }


def table(runs: list[dict[str, Any]]) -> str:
    """Markdown: per seed val mIoU of both sides and their gap, then mean, sd and spread."""
    both = all("reference" in r and "litseg" in r for r in runs)
    lines = [
        "| seed | reference val mIoU | litseg val mIoU | litseg - reference |",
        "| --- | --- | --- | --- |",
    ]

    def cell(run: dict[str, Any], side: str) -> str:
        return f"{run[side]['mIoU']:.4f}" if side in run else "-"

    for r in runs:
        gap = f"{r['litseg']['mIoU'] - r['reference']['mIoU']:+.4f}" if both else "-"
        lines.append(f"| {r['seed']} | {cell(r, 'reference')} | {cell(r, 'litseg')} | {gap} |")
    stats = {
        s: spread([r[s]["mIoU"] for r in runs]) for s in ("reference", "litseg") if s in runs[0]
    }

    def agg(key: str, fmt: str) -> str:
        return " | ".join(
            format(stats[s][key], fmt) if s in stats else "-" for s in ("reference", "litseg")
        )

    gap = f"{stats['litseg']['mean'] - stats['reference']['mean']:+.4f}" if both else "-"
    lines.append(f"| mean | {agg('mean', '.4f')} | {gap} |")
    lines.append(f"| sd over seeds | {agg('sd', '.4f')} | |")
    lines.append(f"| spread (max - min) | {agg('spread', '.4f')} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--epochs", type=int, default=RECIPE.epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--crop", type=int, default=RECIPE.crop)
    parser.add_argument("--workers", type=int, default=RECIPE.workers, help="loader processes")
    parser.add_argument("--limit-train-batches", type=int, help="batches per epoch (tiny runs)")
    parser.add_argument("--limit-val-batches", type=int, help="val batches (default: all)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--side", choices=["both", "reference", "litseg"], default="both")
    parser.add_argument("--runs-dir", type=Path, help="litseg's run folders (logs/parity/<time>)")
    parser.add_argument("--json", type=Path, help="write the settings, runs and summary here")
    args = parser.parse_args(argv)
    if not (args.data_root / "train").is_dir():
        sys.exit(f"parity_camvid.py: no CamVid at {args.data_root}; set --data-root")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("parity_camvid.py: --device cuda but no CUDA device is visible")
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    runs_dir = args.runs_dir or ROOT / "logs" / "parity" / stamp
    budget = {
        "epochs": args.epochs,
        "crop": args.crop,
        "workers": args.workers,
        "limit_train_batches": args.limit_train_batches,
        "limit_val_batches": args.limit_val_batches,
        "device": args.device,
    }
    runs = []
    for seed in args.seeds:
        run: dict[str, Any] = {"seed": seed}
        common = (args.data_root, seed, args.epochs, args.crop, args.device, args.workers)
        limits = (args.limit_train_batches, args.limit_val_batches)
        if args.side in ("both", "reference"):
            run["reference"] = run_reference(*common, *limits)
            print(f"seed {seed} reference: val mIoU {run['reference']['mIoU']:.4f} "
                  f"({run['reference']['wall_s']} s)", flush=True)  # fmt: skip
        if args.side in ("both", "litseg"):
            run_dir = runs_dir / f"litseg_seed{seed}"
            command = litseg_command(*common, *limits, run_dir)
            print(f"seed {seed} litseg: {shlex.join(command)}", flush=True)
            try:
                run["litseg"] = run_litseg(command, runs_dir / f"litseg_seed{seed}.log", run_dir)
            except RuntimeError as err:
                sys.exit(f"parity_camvid.py: {err}")
            print(f"seed {seed} litseg: val mIoU {run['litseg']['mIoU']:.4f} "
                  f"({run['litseg']['wall_s']} s)", flush=True)  # fmt: skip
        runs.append(run)
    print(table(runs))
    if args.json:
        sides = [s for s in ("reference", "litseg") if s in runs[0]]
        result = {
            "experiment": "camvid_cpu",
            "budget": budget,
            "recipe": asdict(RECIPE),
            "runs": runs,
            "summary": {s: spread([r[s]["mIoU"] for r in runs]) for s in sides},
            "mean_gap": statistics.fmean(r["litseg"]["mIoU"] - r["reference"]["mIoU"] for r in runs)
            if len(sides) == 2
            else None,
            "date": datetime.now().strftime("%Y-%m-%d"),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
