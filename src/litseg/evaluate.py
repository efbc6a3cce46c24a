"""Evaluation behind ``python eval.py ckpt_path=...``: test a checkpoint, print and log metrics.

Besides the logged metrics, the run directory gets a report: ``<split>_metrics.md`` and
``<split>_metrics.csv`` (per-class IoU with each class's pixel share, then the overall
metrics) and ``worst/`` with the ``report.worst_k`` images of lowest IoU drawn as
image | truth | prediction, listed in ``worst/worst.csv`` with their files. The report covers
exactly the images the metrics saw (``trainer.limit_test_batches`` and the like included).

``inference=whole|slide`` (with ``inference.tta=flip|hflip|vflip|d4``) computes the logits as
predict.py does (:func:`litseg.inference.infer`); without it the network sees each batch as
in validation during training.
"""

import csv
import heapq
import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from torch import nn
from torch.utils.data import Subset

from litseg.builders import build_datamodule, build_loggers, build_module, require
from litseg.checkpoint import load_checkpoint, training_config
from litseg.config_checks import check_run_config
from litseg.errors import ConfigError
from litseg.inference import infer, model_stride
from litseg.metrics import predictions
from litseg.runtime.resume import checkpoint_file
from litseg.train import output_dir
from litseg.utils.summary import to_floats, write_summary
from litseg.visualize import comparison, palette_for, save_png, to_uint8_image

log = logging.getLogger(__name__)

# Groups restored from the checkpoint's training config unless the command line names them.
RESTORED_GROUPS = ("data", "augment", "model", "loss", "module")
# What a model's output must agree with in the data it is evaluated on.
MODEL_DATA_KEYS = ("task", "num_classes", "in_channels")
_ABSENT = object()


def _cli_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def merge_training_config(
    cfg: DictConfig, train_cfg: dict[str, Any], overrides: list[str]
) -> DictConfig:
    """Take model, data, ... from the training run, keeping what the command line changed.

    ``data=<name>`` on the command line replaces the training data config; ``data.key=value``
    adjusts it (a key the stored config lacks is a ConfigError listing the keys it has;
    ``+data.key=value`` adds one); with neither the training run's data config is used as it
    was. ``data.root=<folder>`` moves every path of the stored data config that lay under the
    training root (the stored config is resolved: ``data.dataset.root`` holds the old path).
    """
    cfg = cfg.copy()
    for group in RESTORED_GROUPS:
        if group not in train_cfg:
            continue
        if any(re.match(rf"^[+~]*{group}=", o) for o in overrides):
            continue
        stored = OmegaConf.create({group: train_cfg[group]})
        adjusted = []
        for override in overrides:
            if not re.match(rf"^\+{{0,2}}{group}\.", override):
                continue
            if not override.startswith("+") or override.startswith("++"):
                _check_stored_key(stored, override.lstrip("+"), group)
            adjusted.append(override.lstrip("+"))
        node = OmegaConf.merge(stored, OmegaConf.from_dotlist(adjusted))
        if group == "data":
            _move_root(node.data, train_cfg["data"].get("root"))
            _follow_changed_keys(node.data, train_cfg["data"])
        with open_dict(cfg):
            cfg[group] = node[group]
    return cfg


def _check_stored_key(stored: DictConfig, override: str, group: str) -> None:
    """Refuse ``group.key=value`` when the checkpoint's stored ``group`` has no such key."""
    key = override.split("=", 1)[0]
    if OmegaConf.select(stored, key, default=_ABSENT) is not _ABSENT:
        return
    parent = key.rsplit(".", 1)[0]
    node = OmegaConf.select(stored, parent, default=None)
    keys = (
        ", ".join(str(k) for k in node if k != "_target_") if isinstance(node, DictConfig) else ""
    )
    target = str(
        OmegaConf.select(stored, f"{group}.dataset._target_", default="")
        or OmegaConf.select(stored, f"{group}._target_", default="")
        or ""
    )
    built = f" ({target.rsplit('.', 1)[-1]})" if target else ""
    raise ConfigError(
        f"{key}: the checkpoint's {group} config{built} has no such key"
        + (f"; {parent} has {keys}" if keys else "")
        + f"; +{key}=... adds it, {group}=<name> replaces the whole {group} config"
    )


def _replace_leaves(node: DictConfig | ListConfig, replace: Callable[[Any, Any], Any]) -> None:
    """Set every leaf of ``node`` (nested dicts and lists) to ``replace(key, value)``."""
    for key in list(node.keys()) if isinstance(node, DictConfig) else range(len(node)):
        value = node._get_node(key)
        if isinstance(value, DictConfig | ListConfig):
            _replace_leaves(value, replace)
        else:
            old = node[key]
            new = replace(key, old)
            if new != old:
                node[key] = new


def _move_root(data: DictConfig, old_root: Any) -> None:
    """Give every stored path under the training ``data.root`` the new ``data.root``."""
    new_root = data.get("root")
    if not isinstance(old_root, str) or not old_root or new_root in (None, old_root):
        return
    new_root = str(new_root)
    old = old_root.rstrip("/")

    def move(_key: Any, value: Any) -> Any:
        if isinstance(value, str) and (value == old or value.startswith(old + "/")):
            return new_root.rstrip("/") + value[len(old) :]
        return value

    _replace_leaves(data, move)
    data.root = new_root


def _follow_changed_keys(data: DictConfig, stored: dict[str, Any]) -> None:
    """Carry a changed top-level data key into the nested keys that were resolved from it.

    The stored config is resolved, so ``dataset.fold: ${data.fold}`` was saved as ``fold: 4``:
    ``data.fold=0`` would change ``data.fold`` alone and evaluate the old fold. A nested key of
    the same name that held the old value takes the new one.
    """
    changed = {
        key: (stored[key], data[key])
        for key in data
        if key != "root"
        and key in stored
        and not isinstance(stored[key], dict | list)
        and stored[key] != data[key]
    }

    def follow(key: Any, value: Any) -> Any:
        return changed[key][1] if key in changed and value == changed[key][0] else value

    for key in data:
        if isinstance(data._get_node(key), DictConfig):
            _replace_leaves(data[key], follow)


def check_fits_model(cfg: DictConfig, train_cfg: dict[str, Any] | None) -> None:
    """Refuse data whose task, classes or channels differ from what the checkpoint's model
    was trained on: one line naming the keys, instead of a failure deep in the metrics."""
    stored = (train_cfg or {}).get("data") or {}
    differ = [k for k in MODEL_DATA_KEYS if k in stored and stored[k] != cfg.data.get(k, stored[k])]
    if not differ:
        return
    found = ", ".join(f"data.{k}={cfg.data.get(k)}" for k in differ)
    trained = ", ".join(f"{k}={stored[k]}" for k in differ)
    names = stored.get("class_names")
    classes = f" ({', '.join(map(str, names))})" if names else ""
    raise ConfigError(
        f"{found} does not fit the checkpoint's model, trained with {trained}{classes}; "
        "evaluate it on data with the same task, classes and channels"
    )


class InferenceNet(nn.Module):
    """A network whose forward pass is :func:`litseg.inference.infer` with fixed options
    (whole or sliding-window inference, flip TTA), so eval's metrics and report see the
    logits predict.py would compute."""

    def __init__(self, net: nn.Module, options: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.options = options

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return infer(self.net, images, **self.options)


def inference_options(cfg: DictConfig, net: nn.Module) -> dict[str, Any] | None:
    """The keyword arguments of :func:`litseg.inference.infer` that ``inference`` asks for,
    None without an ``inference`` group. The stride defaults to the model's, a sliding
    window to the training ``data.crop_size`` (as in predict.py)."""
    node = cfg.get("inference")
    if node is None:
        return None
    options = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items()}
    if options.get("stride") is None:
        options["stride"] = model_stride(net)
    if options.get("mode") == "slide" and not options.get("window"):
        options["window"] = cfg.data.get("crop_size")
        if options["window"] is None:
            raise ConfigError(
                "inference=slide needs inference.window: data has no crop_size to take it from"
            )
    window = options.get("window")
    if isinstance(window, list):
        options["window"] = tuple(window)
    return {k: v for k, v in options.items() if v is not None}


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test (or validate) the checkpoint at ``ckpt_path``; return metrics and the run dir."""
    started = time.time()
    ckpt_path = checkpoint_file(require(cfg, "ckpt_path"))
    checkpoint = load_checkpoint(ckpt_path, allow_targets=list(cfg.get("allow_targets") or []))
    train_cfg = training_config(checkpoint)
    if train_cfg is not None:
        cfg = merge_training_config(cfg, train_cfg, _cli_overrides())
    else:
        log.warning("%s holds no litseg config; using the model and data given here", ckpt_path)
    check_run_config(cfg)
    check_fits_model(cfg, train_cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    split = cfg.get("split", "test")
    if split not in ("test", "val"):
        raise ConfigError(f"split={split}; expected test or val")

    datamodule = build_datamodule(cfg)
    if split not in datamodule.split_args:
        has = ", ".join(datamodule.split_args) or "none"
        other = next((s for s in ("val", "test") if s in datamodule.split_args), None)
        raise ConfigError(
            f"split={split}: the data at {cfg.data.get('root', 'data')} has no {split} split "
            f"(it has {has})" + (f"; evaluate with split={other}" if other else "")
        )
    datamodule.build(split)  # a missing or broken data.root is found before the Trainer starts
    module = build_module(cfg)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:  # size mismatch, missing or unexpected keys
        changed = [o.lstrip("+") for o in _cli_overrides() if re.match(r"^[+~]*model[.=]", o)]
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), "")
        raise ConfigError(
            f"ckpt_path={ckpt_path}: its weights do not fit the model built here ({first})"
            + (f"; drop {' '.join(changed)}" if changed else "")
            + "; the model comes from the checkpoint, leave model.* unset"
        ) from None
    options = inference_options(cfg, module.net)
    if options is not None:
        module.net = InferenceNet(module.net, options)
        log.info("Logits by inference=%s", " ".join(f"{k}={v}" for k, v in options.items()))
    trainer: L.Trainer = instantiate(cfg.trainer, logger=build_loggers(cfg) or False, callbacks=[])
    if split == "test":
        trainer.test(module, datamodule=datamodule)
    else:
        trainer.validate(module, datamodule=datamodule)
    metrics = to_floats(trainer.callback_metrics)
    run_dir = output_dir(cfg)
    result = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt_path),
        "split": split,
        "metrics": dict(sorted(metrics.items())),
    }
    if trainer.is_global_zero:
        seen = images_seen(trainer, datamodule, split)
        print(write_report(cfg, module, datamodule, split, metrics, run_dir, seen))
        write_summary(
            run_dir / "summary.json",
            task="eval",
            **result,
            duration_s=round(time.time() - started, 1),
            overrides=_cli_overrides(),
        )
        log.info("Run directory: %s", run_dir)
    return result


def images_seen(trainer: L.Trainer, datamodule: Any, split: str) -> int:
    """How many images of ``split`` the trainer's test (or validation) pass went through:
    the first ``batches x eval_batch_size`` (the loader does not shuffle), so the report
    covers exactly the images behind the metrics, ``trainer.limit_*_batches`` included."""
    counts = trainer.num_test_batches if split == "test" else trainer.num_val_batches
    size = len(datamodule.build(split))
    batches = sum(counts) if counts else 0
    if not math.isfinite(batches):
        return size
    return min(size, int(batches) * int(datamodule.eval_batch_size))


def image_file(dataset: Any, index: int, root: str | None = None) -> str | None:
    """The image file behind ``dataset[index]`` for datasets read from files (their
    ``image_path``), relative to ``root`` when it lies under it; None for generated data."""
    while isinstance(dataset, Subset):
        dataset, index = dataset.dataset, dataset.indices[index]
    image_path = getattr(dataset, "image_path", None)
    if image_path is None:
        return None
    path = Path(image_path(index))
    if root and path.is_relative_to(root):
        return str(path.relative_to(root))
    return str(path)


def image_iou(
    pred: np.ndarray, truth: np.ndarray, task: str, num_classes: int, ignore: int | None
) -> float:
    """Mean IoU of one image over the classes present in its truth or prediction.

    Binary: foreground IoU. Pixels at ``ignore`` do not count; an image with nothing to find
    and nothing found scores 1.
    """
    if task == "multilabel":  # (C, H, W) 0/1 maps: mean over labels
        scores = [image_iou(p, t, "binary", 1, ignore) for p, t in zip(pred, truth, strict=True)]
        return float(np.mean(scores))
    valid = truth != ignore if ignore is not None else np.ones(truth.shape, dtype=bool)
    pred, truth = pred[valid].astype(np.int64), truth[valid].astype(np.int64)
    classes = [1] if task == "binary" else range(num_classes)
    ious = []
    for k in classes:
        p, t = pred == k, truth == k
        union = np.logical_or(p, t).sum()
        if union:
            ious.append(np.logical_and(p, t).sum() / union)
    return float(np.mean(ious)) if ious else 1.0


@torch.no_grad()
def _predict(module: Any, samples: list[dict[str, Any]], task: str) -> list[np.ndarray]:
    """Hard predictions for samples, batched when they share one size."""
    threshold = module.hparams.get("threshold", 0.5)
    images = [s["image"] for s in samples]
    if len({tuple(i.shape) for i in images}) == 1:
        logits = module(torch.stack(images).to(module.device)).cpu()
        return list(predictions(logits, task, threshold).numpy())
    return [_predict(module, [s], task)[0] for s in samples]


@torch.no_grad()
def scan_images(
    module: Any,
    dataset: Any,
    task: str,
    num_classes: int,
    ignore: int | None,
    batch_size: int,
    worst_k: int,
    count: int | None = None,
) -> tuple[list[tuple[float, int]], np.ndarray]:
    """(the ``worst_k`` (IoU, index) pairs, lowest first; truth pixels per class) over the
    first ``count`` images (None: all)."""
    module.eval()
    worst: list[tuple[float, int]] = []  # a max-heap of the k lowest, as (-iou, -index)
    support = np.zeros(max(num_classes, 1), dtype=np.int64)
    count = len(dataset) if count is None else min(count, len(dataset))
    for start in range(0, count, batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, count))]
        for offset, (sample, pred) in enumerate(
            zip(samples, _predict(module, samples, task), strict=True)
        ):
            truth = sample["mask"].numpy()
            iou = image_iou(pred, truth, task, num_classes, ignore)
            item = (-iou, -(start + offset))
            if len(worst) < worst_k:
                heapq.heappush(worst, item)
            elif worst_k and item > worst[0]:
                heapq.heapreplace(worst, item)
            if task == "multiclass":
                valid = truth[truth != ignore] if ignore is not None else truth
                support += np.bincount(valid.ravel(), minlength=num_classes)[:num_classes]
            elif task == "binary":
                support[0] += int((truth == 1).sum())
            else:
                support += truth.reshape(num_classes, -1).sum(axis=1).astype(np.int64)
    return sorted((-neg_iou, -neg_index) for neg_iou, neg_index in worst), support


def _report_rows(
    metrics: dict[str, float], split: str, names: list[str], support: np.ndarray
) -> tuple[list[str], list[list[Any]], list[tuple[str, float]]]:
    """(per-class metric names, one row per class, overall (name, value) pairs).

    A metric is per-class when ``<split>/<metric>_<class>`` is logged for every class (IoU,
    and whatever else the metrics module reports per class).
    """
    ours = {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{split}/")}
    suffixes = tuple(f"_{n}" for n in names)
    candidates = sorted({k[: -len(s)] for k in ours for s in suffixes if k.endswith(s)})
    per_class_metrics = [m for m in candidates if all(f"{m}_{n}" in ours for n in names)]
    per_class_keys = {f"{m}_{n}" for m in per_class_metrics for n in names}
    share = support / max(int(support.sum()), 1)
    rows = [
        [name, *(ours[f"{m}_{name}"] for m in per_class_metrics), float(s), int(p)]
        for name, s, p in zip(names, share, support, strict=True)
    ]
    overall = [(k, v) for k, v in sorted(ours.items()) if k not in per_class_keys]
    return per_class_metrics, rows, overall


def write_report(
    cfg: DictConfig,
    module: Any,
    datamodule: Any,
    split: str,
    metrics: dict[str, float],
    run_dir: Path,
    count: int | None = None,
) -> str:
    """Write the Markdown and CSV metric tables and the worst images; return the Markdown.

    Pixel shares and the worst images come from the first ``count`` images of the split
    (None: all), the images the metrics were computed on.
    """
    options = cfg.get("report") or {}
    worst_k = int(options.get("worst_k", 8))
    data = cfg.data
    task, num_classes = data.task, int(data.num_classes)
    names = list(module.class_names)
    ignore = data.get("ignore_index")
    dataset = datamodule.build(split)
    batch_size = int(options.get("batch_size", 16))
    worst, support = scan_images(
        module, dataset, task, num_classes, ignore, batch_size, worst_k, count
    )
    columns, rows, overall = _report_rows(metrics, split, names, support)

    header = ["class", *columns, "pixel share"]
    lines = [f"## {split} metrics", "", "| " + " | ".join(header) + " |"]
    lines.append("|---|" + "---:|" * (len(header) - 1))
    lines += ["| " + " | ".join([r[0], *(f"{v:.4f}" for v in r[1:-1])]) + " |" for r in rows]
    lines += ["", "| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in overall]
    markdown = "\n".join(lines) + "\n"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{split}_metrics.md").write_text(markdown)
    # long format (one value per row): stays readable whatever metrics are logged
    with open(run_dir / f"{split}_metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "metric", "value"])
        for row in rows:
            for metric, value in zip([*columns, "pixel_share", "pixels"], row[1:], strict=True):
                writer.writerow([row[0], metric, value if metric == "pixels" else f"{value:.6f}"])
        for name, value in overall:
            writer.writerow(["all", name, f"{value:.6f}"])

    if worst:
        _draw_worst(worst, dataset, module, data, task, run_dir / "worst")
    return markdown


def _draw_worst(worst, dataset, module, data, task: str, folder: Path) -> None:
    """image | truth | prediction for each of the worst images, and worst.csv listing them."""
    palette = palette_for(int(data.num_classes), data.get("palette"))
    if task == "binary":
        palette = palette_for(2, data.get("palette"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for rank, (iou, index) in enumerate(worst, start=1):
        sample = dataset[index]
        pred = _predict(module, [sample], task)[0].astype(np.int64)
        truth = sample["mask"].numpy().astype(np.int64)
        if task == "multilabel":  # show the first active label of each pixel
            pred = np.where(pred.any(0), pred.argmax(0) + 1, 0)
            truth = np.where(truth.any(0), truth.argmax(0) + 1, 0)
            palette = np.concatenate([[[0, 0, 0]], palette_for(int(data.num_classes))])
        image = to_uint8_image(sample["image"], data.get("mean"), data.get("std"))
        picture = comparison(image, truth, pred, palette, data.get("ignore_index"))
        source = image_file(dataset, index, data.get("root"))
        label = re.sub(r"[^\w.-]+", "_", Path(source).stem) if source else f"index{index}"
        name = f"{rank:02d}_{label}_iou{iou:.3f}.png"
        save_png(picture, folder / name, scale=2 if max(image.shape[:2]) < 256 else 1)
        rows.append((rank, index, source or "", f"{iou:.6f}", name))
    with open(folder / "worst.csv", "w", newline="") as f:
        writer = csv.writer(f)
        # image: the dataset's file (relative to data.root), empty for generated data;
        # file: the picture drawn here
        writer.writerow(["rank", "index", "image", "IoU", "file"])
        writer.writerows(rows)
