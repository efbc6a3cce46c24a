"""Metrics against scikit-learn and an independent HD95, incl. ignore, absent and empty cases."""

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from scipy.ndimage import binary_erosion, distance_transform_edt
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    jaccard_score,
    recall_score,
)

from litseg.metrics import HausdorffDistance95, build_metrics, save_confusion_matrix, summarize

C = 4
NAMES = ["a", "b", "c", "d"]


def multiclass_case(case: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, C, (3, 16, 16))
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, C, target.shape))
    if case == "ignore":
        target[0, :4] = 255
    elif case == "absent":  # class 2 absent from the target but predicted sometimes
        target[target == 2] = 3
    elif case == "empty":  # class 3 absent from target and prediction
        target[target == 3] = 0
        pred[pred == 3] = 1
    elif case == "background":
        target[:] = 0
    return pred, target


def with_nan(score, t: np.ndarray, p: np.ndarray, **kw) -> np.ndarray:
    """A scikit-learn score with NaN for the classes absent from both target and prediction."""
    values = np.atleast_1d(score(t, p, zero_division=0, **kw)).astype(float)
    if t.ndim == 2:  # multilabel indicator
        empty = (t.sum(0) == 0) & (p.sum(0) == 0)
    else:
        labels = kw.get("labels", [1])
        empty = np.array([not ((t == c).any() or (p == c).any()) for c in labels])
    values[empty] = np.nan
    return values


def computed(task: str, pred: np.ndarray, target: np.ndarray, n: int, ignore=255) -> dict:
    metrics = build_metrics(task, n, ignore_index=ignore)
    metrics.update(torch.from_numpy(pred), torch.from_numpy(target))
    values = metrics.compute()
    return {"confmat": values["confmat"], **summarize(values, "val", NAMES[:n] or ["fg"])}


@pytest.mark.parametrize("case", ["random", "ignore", "absent", "empty", "background"])
def test_multiclass_metrics_match_sklearn(case: str) -> None:
    pred, target = multiclass_case(case)
    values = computed("multiclass", pred, target, C)
    keep = target != 255
    t, p = target[keep], pred[keep]
    labels = list(range(C))
    iou = with_nan(jaccard_score, t, p, average=None, labels=labels)
    dice = with_nan(f1_score, t, p, average=None, labels=labels)
    ours_iou = [values[f"val/IoU_{n}"].item() for n in NAMES]
    ours_dice = [values[f"val/dice_{n}"].item() for n in NAMES]
    np.testing.assert_allclose(ours_iou, iou, atol=1e-6)
    np.testing.assert_allclose(ours_dice, dice, atol=1e-6)
    assert math.isclose(values["val/mIoU"].item(), np.nanmean(iou), abs_tol=1e-6)
    assert math.isclose(values["val/dice"].item(), np.nanmean(dice), abs_tol=1e-6)
    assert math.isclose(values["val/pixel_acc"].item(), accuracy_score(t, p), abs_tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
        balanced = balanced_accuracy_score(t, p)
    assert math.isclose(values["val/mean_class_acc"].item(), balanced, abs_tol=1e-6)
    np.testing.assert_array_equal(values["confmat"].numpy(), confusion_matrix(t, p, labels=labels))
    if case == "empty":
        assert math.isnan(values["val/IoU_d"].item()) and math.isnan(values["val/dice_d"].item())


@pytest.mark.parametrize("case", ["random", "ignore", "background"])
def test_binary_metrics_match_sklearn(case: str) -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, (2, 12, 12))
    pred = np.where(rng.random(target.shape) < 0.8, target, 1 - target)
    if case == "ignore":
        target[:, :3] = 255
    if case == "background":
        target[:] = 0
    values = computed("binary", pred, target, 1)
    keep = target != 255
    t, p = target[keep], pred[keep]
    iou, dice = with_nan(jaccard_score, t, p)[0], with_nan(f1_score, t, p)[0]
    assert np.isclose(values["val/mIoU"].item(), iou, equal_nan=True)
    assert np.isclose(values["val/dice"].item(), dice, equal_nan=True)
    assert math.isclose(values["val/pixel_acc"].item(), accuracy_score(t, p), abs_tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        balanced = balanced_accuracy_score(t, p)
    assert math.isclose(values["val/mean_class_acc"].item(), balanced, abs_tol=1e-6)


def test_multilabel_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    target = rng.integers(0, 2, (2, 3, 10, 10))
    pred = np.where(rng.random(target.shape) < 0.75, target, 1 - target)
    target[:, 2] = 0  # label 2 never present
    values = computed("multilabel", pred, target, 3, ignore=None)
    t = target.transpose(0, 2, 3, 1).reshape(-1, 3)
    p = pred.transpose(0, 2, 3, 1).reshape(-1, 3)
    iou = with_nan(jaccard_score, t, p, average=None)
    np.testing.assert_allclose([values[f"val/IoU_{n}"].item() for n in "abc"], iou, atol=1e-6)
    recall = recall_score(t, p, average=None, zero_division=0)
    present = t.sum(0) > 0  # recall is defined for the labels present in the target
    assert math.isclose(values["val/mean_class_acc"].item(), recall[present].mean(), abs_tol=1e-6)


def reference_hd95(pred: np.ndarray, target: np.ndarray) -> float:
    """HD95 from scipy: 95th percentile of boundary-to-boundary distances, both directions."""

    def edges(mask: np.ndarray) -> np.ndarray:
        return mask & ~binary_erosion(mask)

    pe, te = edges(pred), edges(target)
    to_target = distance_transform_edt(~te)[pe]
    to_pred = distance_transform_edt(~pe)[te]
    return max(np.percentile(to_target, 95), np.percentile(to_pred, 95))


def test_hd95_matches_scipy_reference_and_skips_undefined() -> None:
    rng = np.random.default_rng(3)
    target = np.zeros((2, 40, 40), dtype=np.int64)
    pred = np.zeros_like(target)
    target[0, 5:20, 5:25] = 1
    pred[0, 8:22, 3:20] = 1
    target[0, 25:35, 25:38] = 2
    pred[0, 26:33, 20:36] = 2
    pred[0][rng.random((40, 40)) < 0.01] = 2  # speckles far from the region
    target[1, 10:30, 10:30] = 1  # image 1: class 1 only, predicted nowhere (undefined)
    metric = HausdorffDistance95("multiclass", 3)
    metric.update(torch.from_numpy(pred), torch.from_numpy(target))
    hd = metric.compute()
    for c in (1, 2):
        expected = reference_hd95(pred[0] == c, target[0] == c)
        assert math.isclose(hd[c].item(), expected, rel_tol=1e-5), (c, hd, expected)
    assert hd[1] > 0 and hd[2] > hd[1]


def test_hd95_of_a_perfect_prediction_is_zero_and_ignored_pixels_do_not_count() -> None:
    target = torch.zeros(1, 30, 30, dtype=torch.long)
    target[0, 5:20, 5:20] = 1
    pred = target.clone()
    target[0, 25:, :] = 255  # ignored
    pred[0, 25:, :] = 1  # wrong there, but ignored
    metric = HausdorffDistance95("multiclass", 2, ignore_index=255)
    metric.update(pred, target)
    torch.testing.assert_close(metric.compute(), torch.zeros(2, dtype=torch.double))


def test_confusion_matrix_picture(tmp_path: Path) -> None:
    pred, target = multiclass_case("ignore")
    metrics = build_metrics("multiclass", C, ignore_index=255)
    metrics.update(torch.from_numpy(pred), torch.from_numpy(target))
    path = save_confusion_matrix(metrics["confmat"], NAMES, tmp_path / "cm.png", "multiclass")
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0


def test_hd95_binary_and_multilabel_agree_with_the_scipy_reference() -> None:
    target = np.zeros((1, 30, 30), dtype=np.int64)
    pred = np.zeros_like(target)
    target[0, 4:18, 6:20] = 1
    pred[0, 7:20, 5:16] = 1
    expected = reference_hd95(pred[0] == 1, target[0] == 1)
    binary = HausdorffDistance95("binary", 1)
    binary.update(torch.from_numpy(pred).bool(), torch.from_numpy(target))
    multilabel = HausdorffDistance95("multilabel", 2)
    stacked = lambda a: torch.from_numpy(np.stack([a, 1 - a], axis=1))  # noqa: E731
    multilabel.update(stacked(pred).bool(), stacked(target))
    assert math.isclose(binary.compute().item(), expected, rel_tol=1e-5)  # one class
    assert math.isclose(multilabel.compute()[0].item(), expected, rel_tol=1e-5)
    assert math.isclose(
        multilabel.compute()[1].item(), reference_hd95(pred[0] == 0, target[0] == 0), rel_tol=1e-5
    )
