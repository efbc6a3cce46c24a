"""Class-frequency statistics of the training set, and the median-frequency class weights
made from them (``loss.class_weights: median_frequency``).

Eigen & Fergus (2015): freq(c) = pixels of class c / pixels of the images where c appears, and
weight(c) = median over classes of freq / freq(c). Frequent classes weigh less than 1, rare
ones more. A class that never appears gets weight 0 (it has no pixels to weigh).

The counts are data statistics, so they live in data/: the builder hands the weights to the
loss config, and scripts/check_dataset.py prints them from its scan; losses never read data.
"""

from collections.abc import Iterable

import numpy as np
import torch

from litseg.errors import ConfigError

MEDIAN_FREQUENCY = "median_frequency"


def median_frequency_weights(
    masks: Iterable[np.ndarray | torch.Tensor], num_classes: int, ignore_index: int | None
) -> list[float]:
    """Median-frequency weights (one per class) from class-index masks."""
    class_pixels = np.zeros(num_classes, dtype=np.float64)
    image_pixels = np.zeros(num_classes, dtype=np.float64)
    for mask in masks:
        labels = np.asarray(mask).reshape(-1).astype(np.int64)
        if ignore_index is not None:
            labels = labels[labels != ignore_index]
        labels = labels[(labels >= 0) & (labels < num_classes)]
        counts = np.bincount(labels, minlength=num_classes)
        class_pixels += counts
        image_pixels += (counts > 0) * labels.size
    if not (class_pixels > 0).any():
        raise ConfigError("loss.class_weights=median_frequency: the training set has no labels")
    return weights_from_counts(class_pixels, image_pixels)


def weights_from_counts(class_pixels: np.ndarray, image_pixels: np.ndarray) -> list[float]:
    """Median-frequency weights from per-class pixel counts and the pixel counts of the
    images each class appears in; a class never seen gets 0 (all 0 when none is seen)."""
    seen = class_pixels > 0
    if not seen.any():
        return [0.0] * len(class_pixels)
    freq = np.where(seen, class_pixels / np.maximum(image_pixels, 1), np.nan)
    weights = np.where(seen, np.nanmedian(freq) / freq, 0.0)
    return [float(w) for w in weights]


def training_masks(datamodule: object) -> Iterable[np.ndarray | torch.Tensor]:
    """The masks of a SegmentationDataModule's train split (built without transforms)."""
    if "train" not in getattr(datamodule, "split_args", {}):
        raise ConfigError("loss.class_weights=median_frequency needs a train split in data.splits")
    dataset = datamodule.build("train")
    for index in range(len(dataset)):
        yield dataset[index]["mask"]
