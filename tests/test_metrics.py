"""Metrics agree with scikit-learn and treat absent classes as documented."""

import math

import numpy as np
import torch
from sklearn.metrics import f1_score, jaccard_score

from litseg.metrics import build_metrics, predictions, summarize


def test_multiclass_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, (3, 16, 16))
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 4, target.shape))
    target[0, :2] = 255  # ignored
    metrics = build_metrics("multiclass", 4, ignore_index=255)
    metrics.update(torch.from_numpy(pred), torch.from_numpy(target))
    values = summarize(metrics.compute(), "val", ["a", "b", "c", "d"])
    keep = target != 255
    t, p = target[keep], pred[keep]
    per_class = jaccard_score(t, p, average=None, labels=[0, 1, 2, 3])
    assert np.allclose([values[f"val/IoU_{n}"].item() for n in "abcd"], per_class, atol=1e-6)
    assert math.isclose(values["val/mIoU"].item(), per_class.mean(), abs_tol=1e-6)
    assert math.isclose(values["val/dice"].item(), f1_score(t, p, average="macro"), abs_tol=1e-6)
    assert math.isclose(values["val/pixel_acc"].item(), (t == p).mean(), abs_tol=1e-6)


def test_absent_class_is_nan_and_left_out_of_miou() -> None:
    metrics = build_metrics("multiclass", 3, ignore_index=None)
    target = torch.tensor([[0, 0, 1, 1]])
    metrics.update(target.clone(), target)
    values = summarize(metrics.compute(), "val", ["bg", "x", "never"])
    assert math.isnan(values["val/IoU_never"].item())
    assert values["val/mIoU"].item() == 1.0


def test_binary_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, (2, 12, 12))
    logits = torch.from_numpy(rng.normal(size=(2, 1, 12, 12)) + (target[:, None] - 0.5) * 2)
    pred = predictions(logits, "binary")
    metrics = build_metrics("binary", 1, ignore_index=None)
    metrics.update(pred, torch.from_numpy(target))
    values = summarize(metrics.compute(), "test", ["fg"])
    p = pred.numpy().ravel().astype(int)
    assert math.isclose(values["test/mIoU"].item(), jaccard_score(target.ravel(), p), abs_tol=1e-6)
    assert math.isclose(values["test/IoU_fg"].item(), values["test/mIoU"].item())
