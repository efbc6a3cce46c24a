"""torchmetrics collections per task: per-class IoU, Dice and pixel accuracy.

Per-class IoU uses ``zero_division=nan``: a class absent from both prediction and target over
the whole evaluation reports NaN, and mIoU is the mean over the other classes (nanmean), as in
MMSegmentation. For a binary task the one class is the foreground, so mIoU is foreground IoU.
"""

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryJaccardIndex,
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MultilabelAccuracy,
    MultilabelF1Score,
    MultilabelJaccardIndex,
)

NAN = float("nan")


def build_metrics(task: str, num_classes: int, ignore_index: int | None) -> MetricCollection:
    """Metrics named IoU (per class), dice (macro) and pixel_acc for the given task."""
    if task == "binary":
        metrics = {
            "IoU": BinaryJaccardIndex(ignore_index=ignore_index, zero_division=NAN),
            "dice": BinaryF1Score(ignore_index=ignore_index),
            "pixel_acc": BinaryAccuracy(ignore_index=ignore_index),
        }
    elif task == "multiclass":
        kw = {"num_classes": num_classes, "ignore_index": ignore_index}
        metrics = {
            "IoU": MulticlassJaccardIndex(average="none", zero_division=NAN, **kw),
            "dice": MulticlassF1Score(average="macro", **kw),
            "pixel_acc": MulticlassAccuracy(average="micro", **kw),
        }
    else:
        kw = {"num_labels": num_classes, "ignore_index": ignore_index}
        metrics = {
            "IoU": MultilabelJaccardIndex(average="none", zero_division=NAN, **kw),
            "dice": MultilabelF1Score(average="macro", **kw),
            "pixel_acc": MultilabelAccuracy(average="micro", **kw),
        }
    return MetricCollection(metrics)


def predictions(logits: torch.Tensor, task: str, threshold: float = 0.5) -> torch.Tensor:
    """Hard predictions in the target's format: class indices, or 0/1 maps for sigmoid tasks."""
    if task == "multiclass":
        return logits.argmax(dim=1)
    probs = logits.sigmoid()
    return (probs[:, 0] if task == "binary" else probs) > threshold


def summarize(
    values: dict[str, torch.Tensor], prefix: str, class_names: list[str]
) -> dict[str, torch.Tensor]:
    """Flatten computed metrics into logged names: mIoU, IoU_<class>, dice, pixel_acc."""
    iou = values["IoU"].reshape(-1)
    out = {f"{prefix}/mIoU": iou.nanmean()}
    for name, value in zip(class_names, iou, strict=True):
        out[f"{prefix}/IoU_{name}"] = value
    out[f"{prefix}/dice"] = values["dice"]
    out[f"{prefix}/pixel_acc"] = values["pixel_acc"]
    return out
