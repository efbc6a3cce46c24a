"""Dataset checks: fail fast at setup with the file and what was expected, or report everything.

The DataModule runs :func:`verify` on each split at setup (cheap: file headers, or every
file decoded with ``level="full"``); ``scripts/check_dataset.py`` runs :func:`scan`, which
collects every problem instead of stopping at the first and adds class frequencies,
mean/std and suggested class weights.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from litseg.data.files import IMAGE_SUFFIXES, MASK_SUFFIXES, list_files
from litseg.errors import ConfigError, DataError
from litseg.losses.class_weights import weights_from_counts

CHECK_LEVELS = ("none", "headers", "full")


def valid_labels(num_classes: int) -> int:
    """How many label values a mask may hold: a binary task (1 channel) still has 0 and 1."""
    return max(int(num_classes), 2)


def match_pairs(
    images: Mapping[str, Path], masks: Mapping[str, Path], image_dir: Path, mask_dir: Path
) -> list[tuple[Path, Path]]:
    """(image, mask) pairs by file stem; an image without a mask is an error naming it."""
    missing = sorted(set(images) - set(masks))
    if missing:
        shown = ", ".join(str(images[s].name) for s in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(
            f"{len(missing)} image(s) in {image_dir} have no mask in {mask_dir}: "
            f"{shown}{more}; expected a mask with the same file stem for each"
        )
    return [(images[s], masks[s]) for s in sorted(images)]


def pairs_in_folders(image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of an image folder and a mask folder, matched by file stem."""
    return match_pairs(
        list_files(image_dir, IMAGE_SUFFIXES),
        list_files(mask_dir, MASK_SUFFIXES),
        image_dir,
        mask_dir,
    )


def require_pairs(pairs: list[Any], where: str) -> None:
    """An empty split is an error naming where it was looked for."""
    if not pairs:
        raise DataError(f"no image/mask pairs found in {where}; expected at least one")


def check_mask_values(
    mask: np.ndarray, path: Path, num_classes: int, ignore_index: int | None
) -> None:
    """Mask values must lie in [0, num_classes) or equal ignore_index."""
    values = np.unique(mask)
    bad = values[(values < 0) | (values >= valid_labels(num_classes))]
    if ignore_index is not None:
        bad = bad[bad != ignore_index]
    if bad.size:
        ignore = f" or ignore_index {ignore_index}" if ignore_index is not None else ""
        raise DataError(
            f"{path} has label value(s) {bad[:10].tolist()} outside "
            f"[0, {valid_labels(num_classes)}){ignore}; check data.num_classes, "
            "data.ignore_index or the mask encoding"
        )


def check_same_size(
    image_size: tuple[int, int], mask_size: tuple[int, int], image_path: Path, mask_path: Path
) -> None:
    """Image and mask must have the same (height, width)."""
    if tuple(image_size) != tuple(mask_size):
        raise DataError(
            f"{mask_path} is {mask_size[1]}x{mask_size[0]} (WxH) but its image "
            f"{image_path} is {image_size[1]}x{image_size[0]}; expected equal sizes"
        )


def verify(dataset: Any, level: str = "headers") -> None:
    """Fail fast on the first broken pair of a file-backed dataset.

    ``headers`` reads only file headers (sizes match, files open); ``full`` also decodes every
    image and mask (truncated files, label values). Datasets without ``pairs`` are skipped.
    """
    if level not in CHECK_LEVELS:
        raise ConfigError(f"data.check={level!r}; expected one of {', '.join(CHECK_LEVELS)}")
    if level == "none" or not hasattr(dataset, "pairs"):
        return
    from litseg.data.files import image_size

    for image_path, mask_path in dataset.pairs:
        iw, ih = image_size(image_path)
        mw, mh = image_size(mask_path)
        check_same_size((ih, iw), (mh, mw), image_path, mask_path)
    if level == "full":
        for index in range(len(dataset.pairs)):
            dataset.raw(index)


@dataclass
class Report:
    """What :func:`scan` found in one split."""

    split: str
    pairs: int = 0
    errors: list[str] = field(default_factory=list)
    class_pixels: np.ndarray | None = None
    ignored_pixels: int = 0
    channel_sum: np.ndarray | None = None
    channel_sq_sum: np.ndarray | None = None
    pixels: int = 0

    @property
    def mean(self) -> list[float]:
        """Per-channel mean of the images on a 0..1 scale."""
        return (self.channel_sum / max(self.pixels, 1)).round(4).tolist()

    @property
    def std(self) -> list[float]:
        """Per-channel standard deviation of the images on a 0..1 scale."""
        mean = self.channel_sum / max(self.pixels, 1)
        var = self.channel_sq_sum / max(self.pixels, 1) - mean**2
        return np.sqrt(np.maximum(var, 0)).round(4).tolist()

    @property
    def frequencies(self) -> list[float]:
        """Share of labelled pixels per class (ignored pixels left out)."""
        total = max(int(self.class_pixels.sum()), 1)
        return (self.class_pixels / total).round(4).tolist()


def scan(
    dataset: Any,
    split: str,
    num_classes: int,
    ignore_index: int | None,
    orphans: Iterable[str] = (),
) -> tuple[Report, list[float]]:
    """Decode every pair of ``dataset`` (file-backed or generated), collecting problems.

    Returns the report and the suggested (median-frequency) class weights.
    """
    labels = valid_labels(num_classes)
    report = Report(split=split, class_pixels=np.zeros(labels, dtype=np.int64))
    report.errors.extend(orphans)
    image_pixels = np.zeros(labels, dtype=np.int64)
    for index in range(len(dataset)):
        try:
            image, mask = dataset.raw(index)
        except DataError as err:
            report.errors.append(str(err))
            continue
        report.pairs += 1
        pixels = image.reshape(-1, image.shape[-1]).astype(np.float64) / 255.0
        if report.channel_sum is None:
            report.channel_sum = np.zeros(pixels.shape[1])
            report.channel_sq_sum = np.zeros(pixels.shape[1])
        report.channel_sum += pixels.sum(axis=0)
        report.channel_sq_sum += (pixels**2).sum(axis=0)
        report.pixels += pixels.shape[0]
        labelled = mask[mask != ignore_index] if ignore_index is not None else mask.ravel()
        report.ignored_pixels += int(mask.size - labelled.size)
        counts = np.bincount(labelled.ravel(), minlength=labels)[:labels]
        report.class_pixels += counts
        image_pixels += np.where(counts > 0, mask.size, 0)
    if report.channel_sum is None:
        report.channel_sum = report.channel_sq_sum = np.zeros(1)
    weights = weights_from_counts(report.class_pixels, image_pixels)
    return report, [round(w, 4) for w in weights]
