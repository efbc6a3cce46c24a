"""torchmetrics collections per task: IoU, Dice, pixel and mean class accuracy, boundaries.

Per-class IoU and Dice use ``zero_division=nan``: a class absent from both prediction and
target over the whole evaluation reports NaN, and mIoU / dice are the means over the other
classes (nanmean), as in MMSegmentation. Mean class accuracy is the mean per-class recall over
the classes present in the target (scikit-learn's balanced accuracy). For a binary task the one
class is the foreground, so mIoU is foreground IoU and mean class accuracy averages the
foreground and background recalls. ``ignore_index`` pixels count nowhere.
"""

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryConfusionMatrix,
    BinaryJaccardIndex,
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassJaccardIndex,
    MultilabelAccuracy,
    MultilabelConfusionMatrix,
    MultilabelJaccardIndex,
)

from litseg.extras import require_extra

NAN = float("nan")


class HausdorffDistance95(Metric):
    """95th-percentile Hausdorff distance (pixels) between predicted and true class boundaries.

    Computed per image and class with MONAI (the ``metrics`` extra: without it, building the
    metric raises one ConfigError line saying what to install); an image where a class is
    missing from the prediction or the target has no defined distance and is left out for
    that class. Ignored pixels belong to no class. ``compute`` returns the per-class means
    (C,), NaN where no image had the class in both. It costs about 0.7 s per 480x360 frame
    on a CPU, hence off by default in training (``module.boundary_metric``).
    """

    full_state_update = False

    def __init__(self, task: str, num_classes: int, ignore_index: int | None = None) -> None:
        require_extra("metrics", "module.boundary_metric=true", "module.boundary_metric=false")
        super().__init__()
        self.task, self.num_classes, self.ignore_index = task, num_classes, ignore_index
        self.add_state("total", torch.zeros(num_classes, dtype=torch.double), "sum")
        self.add_state("count", torch.zeros(num_classes, dtype=torch.double), "sum")

    def _onehot(self, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.task == "multiclass":
            safe = labels.masked_fill(~valid, 0).long()
            onehot = F.one_hot(safe, self.num_classes).permute(0, 3, 1, 2)
            return onehot * valid.unsqueeze(1)
        if self.task == "binary":
            labels, valid = labels.unsqueeze(1), valid.unsqueeze(1)
        return (labels == 1) & valid

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        from monai.metrics import compute_hausdorff_distance

        valid = (
            torch.ones_like(target, dtype=torch.bool)
            if self.ignore_index is None
            else target != self.ignore_index
        )
        y = self._onehot(target, valid).float().cpu()
        y_pred = self._onehot(preds.to(target.dtype), valid).float().cpu()
        present = (y.flatten(2).sum(-1) > 0) & (y_pred.flatten(2).sum(-1) > 0)
        if not present.any():
            return
        with warnings.catch_warnings():  # MONAI warns about the empty classes skipped below
            warnings.simplefilter("ignore")
            distances = compute_hausdorff_distance(
                y_pred, y, include_background=True, percentile=95
            ).double()
        finite = present & torch.isfinite(distances)
        self.total += torch.where(finite, distances, 0).sum(0).to(self.total)
        self.count += finite.sum(0).to(self.count)

    def compute(self) -> torch.Tensor:
        return torch.where(self.count > 0, self.total / self.count.clamp_min(1), NAN)


def build_metrics(
    task: str, num_classes: int, ignore_index: int | None, boundary: bool = False
) -> MetricCollection:
    """Per-class IoU, pixel_acc, a confusion matrix and, if asked, boundary HD95.

    Dice per class follows from IoU (Dice = 2 IoU / (1 + IoU)) and mean class accuracy from
    the confusion matrix, in ``summarize``.
    """
    if task == "binary":
        kw = {"ignore_index": ignore_index}
        metrics = {
            "IoU": BinaryJaccardIndex(zero_division=NAN, **kw),
            "pixel_acc": BinaryAccuracy(**kw),
            "confmat": BinaryConfusionMatrix(**kw),
        }
    elif task == "multiclass":
        kw = {"num_classes": num_classes, "ignore_index": ignore_index}
        metrics = {
            "IoU": MulticlassJaccardIndex(average="none", zero_division=NAN, **kw),
            "pixel_acc": MulticlassAccuracy(average="micro", **kw),
            "confmat": MulticlassConfusionMatrix(**kw),
        }
    else:
        kw = {"num_labels": num_classes, "ignore_index": ignore_index}
        metrics = {
            "IoU": MultilabelJaccardIndex(average="none", zero_division=NAN, **kw),
            "pixel_acc": MultilabelAccuracy(average="micro", **kw),
            "confmat": MultilabelConfusionMatrix(**kw),
        }
    if boundary:
        metrics["HD95"] = HausdorffDistance95(task, num_classes, ignore_index)
    return MetricCollection(metrics)


def predictions(logits: torch.Tensor, task: str, threshold: float = 0.5) -> torch.Tensor:
    """Hard predictions in the target's format: class indices, or 0/1 maps for sigmoid tasks."""
    if task == "multiclass":
        return logits.argmax(dim=1)
    probs = logits.sigmoid()
    return (probs[:, 0] if task == "binary" else probs) > threshold


def mean_class_accuracy(confmat: torch.Tensor) -> torch.Tensor:
    """Mean per-class recall from a (C, C) or multilabel (C, 2, 2) confusion matrix.

    Classes with no target pixel have no recall and are left out (nanmean).
    """
    confmat = confmat.double()
    if confmat.ndim == 3:  # multilabel: each label's positive row
        recall = confmat[:, 1, 1] / confmat[:, 1].sum(-1)
    else:
        recall = confmat.diagonal() / confmat.sum(-1)
    return recall.nanmean().float()


def summarize(
    values: dict[str, torch.Tensor], prefix: str, class_names: list[str]
) -> dict[str, torch.Tensor]:
    """Flatten computed metrics into logged names.

    mIoU, IoU_<class>, dice (mean over classes), dice_<class>, pixel_acc, mean_class_acc and,
    when computed, HD95 (mean over classes) and HD95_<class>. The confusion matrix itself is
    not a scalar and is left to the caller.
    """
    iou = values["IoU"].reshape(-1)
    out = {f"{prefix}/mIoU": iou.nanmean()}
    for name, value in zip(class_names, iou, strict=True):
        out[f"{prefix}/IoU_{name}"] = value
    dice = 2 * iou / (1 + iou)  # per class, exact for hard predictions; NaN stays NaN
    out[f"{prefix}/dice"] = dice.nanmean()
    if dice.numel() > 1:
        for name, value in zip(class_names, dice, strict=True):
            out[f"{prefix}/dice_{name}"] = value
    out[f"{prefix}/pixel_acc"] = values["pixel_acc"]
    if "confmat" in values:
        out[f"{prefix}/mean_class_acc"] = mean_class_accuracy(values["confmat"])
    if "HD95" in values:
        hd = values["HD95"].reshape(-1).float()
        out[f"{prefix}/HD95"] = hd.nanmean()
        for name, value in zip(class_names, hd, strict=True):
            out[f"{prefix}/HD95_{name}"] = value
    return out


def save_confusion_matrix(
    metric: Metric,
    class_names: list[str],
    path: str | Path,
    task: str,
    confmat: torch.Tensor | None = None,
) -> Path:
    """Plot a confusion matrix (rows: true class, normalised) with ``metric.plot`` to ``path``.

    ``confmat`` is the already computed (and, under DDP, synchronised) matrix; without it the
    metric is computed here, which under DDP must then happen on every process.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    confmat = (metric.compute() if confmat is None else confmat).double().cpu()
    rows = confmat.sum(-1, keepdim=True)
    normalised = torch.where(rows > 0, confmat / rows.clamp_min(1), 0.0)
    labels = ["background", class_names[0]] if task == "binary" else list(class_names)
    if task == "multilabel":
        fig, _ = metric.plot(val=normalised)
    else:
        size = max(4.0, 0.6 * len(labels) + 2)
        fig, ax = plt.subplots(figsize=(size, size))
        metric.plot(val=normalised, ax=ax, labels=labels, add_text=len(labels) <= 12)
        ax.set_title("Confusion matrix (rows normalised: recall)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


__all__ = [
    "HausdorffDistance95",
    "build_metrics",
    "mean_class_accuracy",
    "predictions",
    "save_confusion_matrix",
    "summarize",
]
