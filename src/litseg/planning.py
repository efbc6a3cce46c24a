"""Plan a training recipe from a dataset fingerprint (``scripts/plan.py``).

The fingerprint is read from the train split once, through the same scan as
``scripts/check_dataset.py`` (so the same broken or misread data is refused), adding image
sizes, in how many images each class appears and the sizes of its connected regions. Every
choice then follows a stated rule (:data:`RULES`), and the batch size comes from real trial
steps on the device that will train, rounded to a power of two: the same data on the same
machine gives the same YAML, byte for byte.
"""

import contextlib
import math
import os
import re
import textwrap
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from litseg.data.checks import refusal, scan, valid_labels
from litseg.errors import ConfigError, DataError

# The rules, per device kind: what the hand-made CPU recipes (conf/experiment/*_cpu.yaml)
# settled on, generalised; the step budget is a knob of scripts/plan.py (steps=N).
RULES: dict[str, dict[str, Any]] = {
    # largest training crop side: 256 px keeps a 2-core CPU step near the hand-made recipes'
    "crop_cap": {"cpu": 256, "cuda": 512},
    # largest batch tried: a CPU gains no throughput from bigger batches, only fewer steps
    "batch_cap": {"cpu": 8, "cuda": 32},
    # share of the device memory (CUDA) or of the machine's RAM (CPU) one step may use
    "memory_share": {"cpu": 0.25, "cuda": 0.8},
    # optimizer steps of the whole run, unless steps=N is given
    "steps": {"cpu": 1000, "cuda": 10000},
}
FEW_IMAGES = 100  # fewer training images than this: the strong augmentation preset
IMBALANCE = 10.0  # largest / smallest class pixel share above this: class weights
SPECK = 16  # regions smaller than this many pixels are reported as specks, not objects
VALIDATIONS = 20  # about this many validations per run
BASE_LR, BASE_BATCH = 3.0e-3, 8  # AdamW one-cycle peak of the hand-made recipes, at batch 8
# groups a plan may carry from the command line; the others would fight the recipe it writes
CARRIED_GROUPS = (
    "data",
    "model",
    "augment",
    "loss",
    "optimizer",
    "scheduler",
    "trainer",
    "module",
    "callbacks",
    "logger",
    "paths",
)


@dataclass
class Fingerprint:
    """What the train split holds: sizes, channels, intensities, classes and their regions."""

    name: str
    task: str
    num_classes: int
    ignore_index: int | None
    labels: list[str]  # one name per label value (binary: background and the positive class)
    images: int
    channels: int
    sizes: Counter  # (height, width) -> images
    mean: list[float]
    std: list[float]
    class_share: list[float]  # share of the labelled pixels
    class_images: list[int]  # images in which each label value appears
    ignored_share: float
    # per label value: connected regions (4-connected) of SPECK pixels or more, their smallest,
    # 5th-percentile and median areas in pixels, and the specks; None where it never appears
    regions: list[dict[str, int] | None]
    weights: list[float]  # median-frequency weights (data/class_frequency.py)

    @property
    def short_side(self) -> int:
        """The 5th percentile of the images' shorter sides (nearly every image covers it)."""
        sides = sorted(s for (h, w), n in self.sizes.items() for s in [min(h, w)] * n)
        return sides[int(0.05 * (len(sides) - 1))]

    @property
    def imbalance(self) -> float:
        """Largest over smallest pixel share among the label values that appear."""
        shares = [s for s in self.class_share if s > 0]
        return max(shares) / min(shares) if shares else 1.0

    def lines(self) -> list[str]:
        """The fingerprint as printed, one fact a line."""
        sizes = ", ".join(f"{w}x{h} ({n})" for (h, w), n in self.sizes.most_common(3))
        more = f" and {len(self.sizes) - 3} more sizes" if len(self.sizes) > 3 else ""
        out = [
            f"data: {self.name} ({self.task}, {self.num_classes} class(es), "
            f"ignore_index {self.ignore_index})",
            f"train images: {self.images}, channels: {self.channels}",
            f"image sizes (WxH, images): {sizes}{more}; shorter side (5th pct): "
            f"{self.short_side} px",
            f"intensity mean: {_fmt(self.mean)}, std: {_fmt(self.std)} (0..1 scale)",
            f"ignored pixels: {100 * self.ignored_share:.1f} %",
            f"classes (pixel share, images, regions >= {SPECK} px: smallest / 5th pct / "
            "median px):",
        ]
        for i, name in enumerate(self.labels):
            region = self.regions[i]
            shape = (
                f"{region['count']} regions: {region['smallest']} / {region['p5']} / "
                f"{region['median']} (+{region['specks']} specks)"
                if region
                else "absent"
            )
            out.append(
                f"  {i} {name}: {100 * self.class_share[i]:.2f} %, in {self.class_images[i]} "
                f"of {self.images} images, {shape}"
            )
        out.append(f"imbalance (largest / smallest class share): {self.imbalance:.1f}")
        return out


def _fmt(values: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


class _Recorder:
    """A dataset seen through :func:`litseg.data.checks.scan`, noting what scan does not
    keep: image sizes and channels, in which images each label appears, region areas."""

    def __init__(self, dataset: Any, labels: int, ignore_index: int | None) -> None:
        self.dataset, self.labels, self.ignore_index = dataset, labels, ignore_index
        self.sizes: Counter = Counter()
        self.channels: set[int] = set()
        self.class_images = np.zeros(labels, dtype=np.int64)
        self.areas: list[list[np.ndarray]] = [[] for _ in range(labels)]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # stored_mask, encoding, pairs, ...
        return getattr(self.dataset, name)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        from scipy import ndimage

        image, mask = self.dataset.raw(index)
        self.sizes[tuple(int(s) for s in image.shape[:2])] += 1
        self.channels.add(int(image.shape[2]) if image.ndim == 3 else 1)
        labelled = (
            mask
            if self.ignore_index is None
            else np.where(mask == self.ignore_index, self.labels, mask)
        )
        present = np.bincount(labelled.ravel(), minlength=self.labels + 1)[: self.labels] > 0
        self.class_images += present
        for value in np.flatnonzero(present):
            regions, count = ndimage.label(labelled == value)
            self.areas[value].append(np.bincount(regions.ravel(), minlength=count + 1)[1:])
        return image, mask


def _regions(areas: list[np.ndarray]) -> dict[str, int] | None:
    """Region statistics of one label value; regions under SPECK pixels (label noise at
    edges) are counted apart and left out of the sizes unless every region is one."""
    if not areas:
        return None
    every = np.sort(np.concatenate(areas))
    kept = every[every >= SPECK]
    sized = kept if kept.size else every
    return {
        "count": int(kept.size),
        "specks": int(every.size - kept.size),
        "smallest": int(sized[0]),
        "p5": int(sized[int(0.05 * (sized.size - 1))]),
        "median": int(sized[(sized.size - 1) // 2]),
    }


def fingerprint(datamodule: Any, name: str) -> Fingerprint:
    """Read the train split of ``datamodule`` once (untransformed) into a Fingerprint.

    Problems ``scripts/check_dataset.py`` would report, or data it would refuse (mostly
    ignored pixels, a class that never appears), stop the plan with a DataError.
    """
    if datamodule.task not in ("binary", "multiclass"):
        raise ConfigError(f"data.task={datamodule.task}: plan.py plans binary and multiclass data")
    dataset = datamodule.make_dataset("train", transform=None)
    if len(dataset) == 0:
        raise DataError("the train split of data is empty; a plan needs training images")
    labels = valid_labels(datamodule.num_classes)
    names = list(datamodule.class_names or [])
    if datamodule.task == "binary":
        names = ["background", *(names or ["foreground"])]
    names = [names[i] if i < len(names) else str(i) for i in range(labels)]
    recorder = _Recorder(dataset, labels, datamodule.ignore_index)
    report, weights = scan(recorder, "train", datamodule.num_classes, datamodule.ignore_index)
    if report.errors:
        more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
        raise DataError(
            f"the train split has problems, first: {report.errors[0]}{more}; "
            "scripts/check_dataset.py with the same overrides lists them all"
        )
    refused = refusal(dataset, [report], datamodule.ignore_index, names)
    if refused:
        raise DataError(refused)
    if len(recorder.channels) > 1:
        raise DataError(
            f"the train images have different channel counts {sorted(recorder.channels)}"
        )
    return Fingerprint(
        name=name,
        task=datamodule.task,
        num_classes=int(datamodule.num_classes),
        ignore_index=datamodule.ignore_index,
        labels=names,
        images=report.pairs,
        channels=recorder.channels.pop(),
        sizes=recorder.sizes,
        mean=report.mean,
        std=report.std,
        class_share=report.frequencies,
        class_images=recorder.class_images.tolist(),
        ignored_share=round(report.ignored_share, 4),
        regions=[_regions(a) for a in recorder.areas],
        weights=weights,
    )


# ---------------------------------------------------------------------------------------------
# the device: a real trial step per batch size


def train_device(cfg: DictConfig) -> str:
    """``cuda`` when the run will train on a GPU (trainer.accelerator allows it), else ``cpu``."""
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def model_stride(model_cfg: DictConfig) -> int:
    """The factor input sides should be a multiple of: 2**depth for litseg's U-Net, 32 else
    (smp pads to 32; torchvision backbones downsample by 8 to 32)."""
    if str(model_cfg.get("_target_", "")).endswith("unet.UNet"):
        return 2 ** int(model_cfg.get("depth", 4))
    return 32


def device_memory(device: str) -> int:
    """Total bytes of the device: the GPU's memory, or the machine's RAM for a CPU."""
    if device == "cuda":
        return int(torch.cuda.mem_get_info()[1])
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _is_oom(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError)
        and ("out of memory" in text or "can't allocate memory" in text)
    )


def trial_step(
    net: torch.nn.Module,
    optimizer_factory: Any,
    batch: int,
    crop: int,
    channels: int,
    task: str,
    classes: int,
    device: str,
    precision: str,
) -> int | None:
    """One real forward + backward + optimizer step at ``batch`` x ``crop`` x ``crop`` on
    ``device``; returns the bytes it needed, or None when it ran out of memory.

    CUDA: the allocator's peak. CPU: weights, gradients, optimizer state, the input and every
    tensor autograd saved for the backward pass, counted once per storage (deterministic,
    unlike the process's resident size). ``classes`` is the net's output channels.
    """
    torch.manual_seed(0)
    weights = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    net.zero_grad(set_to_none=True)
    optimizer = optimizer_factory(net.parameters())
    images = torch.randn(batch, channels, crop, crop, device=device)
    if task == "multiclass":
        target = torch.randint(0, classes, (batch, crop, crop), device=device)
    else:  # binary (one channel) and multilabel: one 0/1 map per channel
        target = torch.randint(0, 2, (batch, classes, crop, crop), device=device).float()
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    autocast = torch.autocast(device, dtype=dtype) if dtype else contextlib.nullcontext()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        with autocast, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = net(images)
            logits = (out["out"] if isinstance(out, dict) else out).float()
            if task == "multiclass":
                loss = F.cross_entropy(logits, target)
            else:
                loss = F.binary_cross_entropy_with_logits(logits, target)
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is one
        if not _is_oom(exc):
            raise
        return None
    finally:
        net.zero_grad(set_to_none=True)
    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    params = sum(p.numel() * p.element_size() for p in net.parameters())
    state = sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for t in s.values()
        if isinstance(t, torch.Tensor)
    )
    return 2 * params + state + images.numel() * images.element_size() + sum(saved.values())


@dataclass
class BatchChoice:
    """The batch size picked and the trials behind it."""

    batch: int
    limit: int
    budget: int
    trials: list[tuple[int, int | None]] = field(default_factory=list)  # (batch, bytes or None)


def choose_batch_size(
    cfg: DictConfig,
    crop: int,
    channels: int,
    device: str,
    precision: str,
    train_images: int,
    budget: int | None = None,
) -> BatchChoice:
    """The largest power of two up to the device's cap (and half the training images) whose
    real trial step at ``crop`` fits the memory budget; doubling from 1, stopping at the
    first that runs out of memory or over budget (bytes; default: RULES' share of the
    device's memory)."""
    limit = min(RULES["batch_cap"][device], max(1, train_images // 2))
    limit = 2 ** int(math.log2(limit))
    if budget is None:
        budget = int(RULES["memory_share"][device] * device_memory(device))
    torch.manual_seed(0)
    net = instantiate(cfg.model).to(device).train()
    optimizer_factory = instantiate(cfg.optimizer)
    classes = int(cfg.data.num_classes)
    choice = BatchChoice(batch=0, limit=limit, budget=budget)
    batch = 1
    while batch <= limit:
        used = trial_step(
            net, optimizer_factory, batch, crop, channels, cfg.data.task, classes, device, precision
        )
        choice.trials.append((batch, used))
        if used is None or used > budget:
            break
        choice.batch = batch
        batch *= 2
    del net
    if device == "cuda":
        torch.cuda.empty_cache()
    if choice.batch == 0:
        raise ConfigError(
            f"one {crop}x{crop} image does not fit the {device} memory budget "
            f"({budget / 2**30:.1f} GiB); pass a smaller data.crop_size or a smaller model"
        )
    return choice


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class Choice:
    """One decision: the config keys it sets and the reason, printed and written."""

    what: str
    values: dict[str, Any]
    reason: str
    detail: str = ""  # measurements: printed, not written (they may vary by a few bytes)


def single_values(overrides: list[str]) -> list[Any]:
    """The command line parsed by Hydra; a sweep or a deletion is a ConfigError (checked
    before composing, which would refuse a sweep less clearly)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(str(exc)) from None
    for override in parsed:
        if override.is_sweep_override():
            raise ConfigError(
                f"{override.input_line}: plan.py takes one value per key, not a sweep"
            )
        if override.is_delete():
            raise ConfigError(f"{override.input_line}: plan.py cannot carry a deletion")
    return parsed


def given_overrides(overrides: list[str], groups: Iterable[str]) -> tuple[dict, dict]:
    """The command line split into group choices and key values, refusing what a plan cannot
    carry into an experiment (sweeps, deletions, experiment= and other groups)."""
    groups = set(groups)
    chosen: dict[str, str] = {}
    values: dict[str, Any] = {}
    for override in single_values(overrides):
        key = override.key_or_group
        if key in groups or key.split("@")[0] in groups:
            if key not in CARRIED_GROUPS:
                raise ConfigError(
                    f"{key}={override.value()}: plan.py writes a whole experiment; choose "
                    f"groups from {', '.join(CARRIED_GROUPS)} and leave {key} to train.py"
                )
            chosen[key] = str(override.value())
        elif key.startswith("hydra."):
            continue
        else:
            values[key] = override.value()
    return chosen, values


def dataset_name(cfg: DictConfig, data_choice: str) -> str:
    """``camvid``, or for a generic folder / annotation source the root folder's name."""
    root = OmegaConf.select(cfg, "data.root", default=None, throw_on_missing=False)
    name = data_choice
    if data_choice in ("folder", "coco", "labelme") and root:
        name = Path(str(root)).resolve().name or data_choice
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "data"


def plan_recipe(
    cfg: DictConfig,
    fp: Fingerprint,
    choices: dict[str, str],
    given: dict[str, str],
    values: dict[str, Any],
    steps: int | None = None,
) -> tuple[list[Choice], BatchChoice | None]:
    """Every choice of the recipe with its reason; the user's own overrides win (and say so)."""
    device = train_device(cfg)
    plan: list[Choice] = []

    def add(what: str, keys: dict[str, Any], reason: str) -> None:
        taken = [f"{k}={values[k]}" for k in keys if k in values]
        taken += [f"{k[1:]}={given[k[1:]]}" for k in keys if k.startswith("$") and k[1:] in given]
        if taken:
            reason = f"{reason} (given on the command line: {', '.join(taken)})"
        plan.append(Choice(what, {k: values.get(k, v) for k, v in keys.items()}, reason))

    add(
        "normalisation",
        {"data.mean": fp.mean, "data.std": fp.std},
        f"per-channel mean and std of the {fp.images} training images",
    )

    # loss and class balance
    if "loss" in given:
        plan.append(Choice("loss", {}, f"loss={given['loss']} given on the command line"))
    elif fp.task == "multiclass" and fp.imbalance > IMBALANCE:
        weights = [round(w, 4) for w in fp.weights]
        add(
            "loss",
            {"loss.class_weights": weights, "$loss": "ce"},
            f"class shares differ {fp.imbalance:.0f}x (> {IMBALANCE:.0f}x): cross-entropy with "
            "median-frequency weights, one balance only (no Dice on top: the CamVid recipes "
            "found balancing twice gives up the large classes)",
        )
    elif fp.task == "multiclass":
        add(
            "loss",
            {"$loss": "dice_ce"},
            f"class shares within {IMBALANCE:.0f}x ({fp.imbalance:.1f}x): Dice + cross-entropy, "
            "no class weights",
        )
    else:
        positive = fp.class_share[1] if len(fp.class_share) > 1 else 0.0
        keys: dict[str, Any] = {"$loss": "dice_bce"}
        reason = f"foreground is {100 * positive:.1f} % of the pixels: Dice + BCE"
        if fp.imbalance > IMBALANCE and fp.task == "binary" and 0 < positive < 0.5:
            keys["loss.terms.bce.pos_weight"] = round(min((1 - positive) / positive, 50.0), 2)
            reason += " with pos_weight = background / foreground pixels (imbalance > 10x)"
        else:
            reason += f", no weights (imbalance {fp.imbalance:.1f}x <= {IMBALANCE:.0f}x)"
        add("loss", keys, reason)

    # crop
    stride = model_stride(cfg.model)
    cap = RULES["crop_cap"][device]
    crop = max(stride, min(cap, fp.short_side) // stride * stride)
    add(
        "crop",
        {"data.crop_size": crop},
        f"shorter image side {fp.short_side} px (5th pct) capped at {cap} ({device}), rounded "
        f"down to a multiple of the model stride {stride}",
    )
    crop = int(values.get("data.crop_size", crop))

    # precision (decided before the trial steps, which run under it)
    if device == "cuda":
        precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        precision_reason = f"{precision}: what this GPU computes fastest"
    else:
        precision = "${litseg.cpu_precision:}"
        precision_reason = "bf16 autocast where the CPU computes bf16 natively, decided at run time"
    add("precision", {"trainer.precision": precision}, precision_reason)

    # batch size: real trial steps on this device
    batch_choice = None
    if "data.batch_size" in values:
        batch = int(values["data.batch_size"])
        plan.append(Choice("batch", {"data.batch_size": batch}, "given on the command line"))
    else:
        batch_choice = choose_batch_size(
            cfg,
            crop,
            fp.channels,
            device,
            str(values.get("trainer.precision", precision)) if device == "cuda" else "32-true",
            fp.images,
        )
        batch = batch_choice.batch
        last, budget_mib = batch_choice.trials[-1], batch_choice.budget / 2**20
        if last[0] == batch:
            stop = (
                f"the cap {batch_choice.limit} ({device} {RULES['batch_cap'][device]}, at most "
                f"half of {fp.images} images)"
            )
        elif last[1] is None:
            stop = f"batch {last[0]} ran out of memory"
        else:
            stop = f"batch {last[0]} is over budget"
        trials = ", ".join(
            f"{b}: {'OOM' if u is None else f'{u / 2**20:.0f} MiB'}" for b, u in batch_choice.trials
        )
        share = RULES["memory_share"][device]
        plan.append(
            Choice(
                "batch",
                {"data.batch_size": batch},
                f"largest power of two whose real trial step at {crop} px fits in "
                f"{100 * share:.0f} % of the {device} memory, up to {stop}",
                detail=f"trial steps: {trials}; budget {budget_mib:.0f} MiB",
            )
        )

    # learning rate and schedule
    lr = float(f"{BASE_LR * math.sqrt(batch / BASE_BATCH):.2g}")
    add(
        "optimizer",
        {"$optimizer": "adamw", "optimizer.lr": lr, "optimizer.weight_decay": 1.0e-4},
        f"AdamW peaking at {BASE_LR:g} for batch {BASE_BATCH} (the hand-made recipes), scaled "
        f"by sqrt(batch / {BASE_BATCH}); tune.lr=true finds one on the data",
    )
    add(
        "scheduler",
        {"$scheduler": "onecycle", "module.scheduler_interval": "step"},
        "one-cycle per step (warm-up, then cosine down), sized to the run's own steps",
    )

    # epochs from the step budget
    budget = steps or RULES["steps"][device]
    per_epoch = max(1, fp.images // batch) if fp.images > batch else 1
    wanted = math.ceil(budget / per_epoch)
    every = max(1, wanted // VALIDATIONS)
    epochs = math.ceil(wanted / every) * every
    add(
        "epochs",
        {
            "trainer.max_epochs": epochs,
            "trainer.check_val_every_n_epoch": every,
            "trainer.log_every_n_steps": max(1, min(50, per_epoch)),
            "callbacks.early_stopping.patience": "${trainer.max_epochs}",
        },
        f"{budget} steps ({'steps=' if steps else device + ' '}budget) / {per_epoch} steps an "
        f"epoch, validating every {every} epoch(s) (~{VALIDATIONS} times); no early stop, the "
        "one-cycle schedule runs to its end",
    )

    # augmentation
    preset = "strong" if fp.images < FEW_IMAGES else "basic"
    add(
        "augment",
        {"$augment": preset},
        f"{fp.images} training images {'<' if preset == 'strong' else '>='} {FEW_IMAGES}: the "
        f"{preset} preset"
        + (
            " (rotation, elastic/grid distortion, as in the U-Net paper)"
            if preset == "strong"
            else " (flip, +-25 % scale, crop, brightness/contrast)"
        ),
    )

    # what is monitored
    if fp.task == "binary":
        add(
            "monitor",
            {
                "monitor.metric": "val/dice",
                "monitor.mode": "max",
                "callbacks.model_checkpoint.filename": "epoch{epoch:03d}-dice{val/dice:.4f}",
            },
            "binary: the best checkpoint by validation Dice",
        )
    else:
        add("monitor", {"monitor.metric": "val/mIoU", "monitor.mode": "max"}, "val/mIoU")
    add(
        "trainer",
        {"$trainer": "gpu" if device == "cuda" else "cpu"},
        f"the device the batch size was measured on ({device})",
    )
    return plan, batch_choice


class _Dumper(yaml.SafeDumper):
    """Block mappings, lists of plain values on one line (``mean: [0.5, 0.5, 0.5]``)."""


def _list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(v, list | dict) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _list)


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def render(
    fp: Fingerprint,
    plan: list[Choice],
    choices: dict[str, str],
    given: dict[str, str],
    values: dict[str, Any],
    name: str,
) -> str:
    """The experiment YAML: header comments (fingerprint, one reason per choice), defaults,
    then the values; the same inputs give the same text."""
    groups = {"data": choices["data"], "model": choices["model"], **given}
    flat: dict[str, Any] = {"task_name": name, "tags": ["plan", fp.name]}
    for choice in plan:
        for key, value in choice.values.items():
            if key.startswith("$"):
                groups.setdefault(key[1:], value)
            else:
                flat[key] = value
    for key, value in values.items():
        flat.setdefault(key, value)
    if "data.root" in flat and isinstance(flat["data.root"], str) and "${" not in flat["data.root"]:
        flat["data.root"] = os.path.abspath(flat["data.root"])
    order = ["data", "augment", "model", "loss", "optimizer", "scheduler", "trainer"]
    defaults = [{f"override /{g}": groups[g]} for g in order if g in groups]
    defaults += [{f"override /{g}": v} for g, v in sorted(groups.items()) if g not in order]
    body = yaml.dump(
        {"defaults": defaults, **_nested(flat)},
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=100,
        allow_unicode=True,
    )
    header = [
        f"Planned by scripts/plan.py from the train split of data={choices['data']}.",
        f"python train.py experiment={name}",
        "Fingerprint:",
        *(f"  {line}" for line in fp.lines()),
        "Choices:",
        *(f"  {c.what}: {c.reason}" for c in plan),
    ]
    wrapped = [
        "# " + part
        for line in header
        for part in textwrap.wrap(
            line, 98, subsequent_indent=" " * (len(line) - len(line.lstrip()) + 4)
        )
    ]
    return "# @package _global_\n" + "\n".join(wrapped) + "\n" + body


def default_path(conf_dir: Path, name: str) -> Path:
    """conf/experiment/<name>.yaml, or <name>_2.yaml, _3, ... when taken (never overwritten)."""
    path = conf_dir / "experiment" / f"{name}.yaml"
    n = 2
    while path.exists():
        path = conf_dir / "experiment" / f"{name}_{n}.yaml"
        n += 1
    return path


def _exists(path: Path) -> ConfigError:
    return ConfigError(
        f"{path} exists; plan.py never overwrites a file: remove it or pass another out=..."
    )


def check_new(path: Path) -> None:
    """A ConfigError naming ``path`` when it already exists (checked before the data is read)."""
    if path.exists():
        raise _exists(path)


def write_new(path: Path, text: str) -> None:
    """Create ``path`` with ``text``; an existing file is a ConfigError naming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise _exists(path) from None
