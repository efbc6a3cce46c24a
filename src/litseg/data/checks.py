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

from litseg.data.class_frequency import weights_from_counts
from litseg.data.files import IMAGE_SUFFIXES, MASK_SUFFIXES, list_files
from litseg.errors import ConfigError, DataError

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


SAMPLE = 8  # masks decoded at setup with check=headers, spread over the split
MOSTLY_IGNORED = 0.5  # more than this share of ignored pixels is refused


def sample_indices(count: int, size: int = SAMPLE) -> list[int]:
    """Up to ``size`` indices spread evenly over ``range(count)`` (first and last included)."""
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(size, count))})


def stored_mask(dataset: Any, index: int) -> np.ndarray | None:
    """The mask of ``index`` as stored in its file, packed to int64 keys (None if the dataset
    has no files or the file is unreadable)."""
    if not hasattr(dataset, "stored_mask"):
        return None
    try:
        stored = dataset.stored_mask(index)
    except DataError:
        return None
    encoding = getattr(dataset, "encoding", None)
    return encoding.codes(stored) if encoding is not None else stored.astype(np.int64)


def show_value(dataset: Any, key: int) -> str:
    """A stored key as a user writes it: ``255``, or ``(r, g, b)`` for colour masks."""
    encoding = getattr(dataset, "encoding", None)
    return encoding.show(key) if encoding is not None else str(int(key))


def suggest_encoding(dataset: Any, found: Iterable[int], labels: int) -> str:
    """A ``data.mask_values=...`` (or ``mask_palette``) override fitting the stored values found."""
    encoding = getattr(dataset, "encoding", None)
    found = sorted(int(v) for v in found)
    if encoding is not None and encoding.colour:
        return "data.mask_palette=[[r, g, b], ...] (one colour per class)"
    if len(found) != labels:
        return "data.mask_values={<stored value>: <class>, ...}"
    table = "data.mask_values={" + ", ".join(f"{v}: {i}" for i, v in enumerate(found)) + "}"
    if found == [0, 255]:
        table += " (data=folder reads 0/255 masks as binary with data.task=binary)"
    return table


def degenerate_labels(
    dataset: Any,
    indices: Iterable[int],
    class_pixels: np.ndarray,
    ignored: int,
    total: int,
    split: str | None,
) -> str | None:
    """Why labels that look like a misread encoding cannot be trained on, or None.

    Refused: more than half of the pixels are the ignore index *and* a class never appears
    (e.g. 0/255 binary masks read with 255 as the ignore index): the message names the
    stored value behind the ignored pixels and the ``data.mask_values`` that would read it.
    """
    ignore_index = getattr(dataset, "ignore_index", None)
    missing = [c for c, n in enumerate(class_pixels) if n == 0]
    if ignore_index is None or not missing or total == 0 or ignored / total <= MOSTLY_IGNORED:
        return None
    behind: dict[int, int] = {}
    found: set[int] = set()
    for index in indices:
        stored = stored_mask(dataset, index)
        if stored is None:
            continue
        _, mask = dataset.raw(index)
        keys, counts = np.unique(stored[mask == ignore_index], return_counts=True)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            behind[key] = behind.get(key, 0) + count
        found.update(np.unique(stored).tolist())
    value = max(behind, key=behind.get) if behind else ignore_index
    where = f"the {split} masks" if split else "the masks"
    return (
        f"{where} are {100 * ignored / total:.1f} % ignored pixels and class(es) {missing} never "
        f"appear: stored value {show_value(dataset, value)} is read as data.ignore_index="
        f"{ignore_index}; if it marks a class, declare how classes are stored, e.g. "
        f"{suggest_encoding(dataset, found or {value}, len(class_pixels))}"
    )


def verify(dataset: Any, level: str = "headers", split: str | None = None) -> None:
    """Fail fast on the first broken pair of a file-backed dataset.

    ``headers`` reads every file's header (sizes match, files open) and decodes a sample of
    :data:`SAMPLE` masks (values in the declared encoding); ``full`` decodes every image and
    mask (truncated files, label values). Either way, masks that are mostly the ignore index
    while a class never appears are refused (see :func:`degenerate_labels`). Datasets without
    ``pairs`` are skipped.
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
    count = len(dataset.pairs)
    indices = list(range(count)) if level == "full" else sample_indices(count)
    labels = valid_labels(getattr(dataset, "num_classes", 2))
    ignore_index = getattr(dataset, "ignore_index", None)
    class_pixels = np.zeros(labels, dtype=np.int64)
    ignored = total = 0
    for index in indices:
        _, mask = dataset.raw(index)
        labelled = mask[mask != ignore_index] if ignore_index is not None else mask.ravel()
        class_pixels += np.bincount(labelled.ravel(), minlength=labels)[:labels]
        ignored += int(mask.size - labelled.size)
        total += int(mask.size)
    problem = degenerate_labels(dataset, indices, class_pixels, ignored, total, split)
    if problem:
        raise DataError(problem)


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
    # stored mask value (packed colour for colour masks) -> [pixels, images]
    values: dict[int, list[int]] = field(default_factory=dict)
    # stored mask value -> the classes its pixels were read as
    value_classes: dict[int, set[int]] = field(default_factory=dict)
    mask_pixels: int = 0

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

    @property
    def ignored_share(self) -> float:
        """Share of all mask pixels that are the ignore index."""
        return self.ignored_pixels / max(int(self.class_pixels.sum()) + self.ignored_pixels, 1)

    def count_values(self, stored: np.ndarray, mask: np.ndarray | None) -> None:
        """Add one mask's stored values (and, when it decoded, the classes they became)."""
        self.mask_pixels += int(stored.size)
        if mask is None or mask.shape != stored.shape:
            keys, counts = np.unique(stored, return_counts=True)
            pairs = [(k, None, c) for k, c in zip(keys.tolist(), counts.tolist(), strict=True)]
        else:
            base = int(mask.max(initial=0)) + 1
            joint, counts = np.unique(stored * base + mask.astype(np.int64), return_counts=True)
            pairs = [
                (j // base, j % base, c)
                for j, c in zip(joint.tolist(), counts.tolist(), strict=True)
            ]
        seen: set[int] = set()
        for key, cls, count in pairs:
            entry = self.values.setdefault(key, [0, 0])
            entry[0] += count
            if key not in seen:
                entry[1] += 1
                seen.add(key)
            if cls is not None:
                self.value_classes.setdefault(key, set()).add(cls)


def scan(
    dataset: Any,
    split: str,
    num_classes: int,
    ignore_index: int | None,
    orphans: Iterable[str] = (),
) -> tuple[Report, list[float]]:
    """Decode every pair of ``dataset`` (file-backed or generated), collecting problems and
    the stored mask values with the classes they are read as.

    Returns the report and the suggested (median-frequency) class weights.
    """
    labels = valid_labels(num_classes)
    report = Report(split=split, class_pixels=np.zeros(labels, dtype=np.int64))
    report.errors.extend(orphans)
    image_pixels = np.zeros(labels, dtype=np.int64)
    for index in range(len(dataset)):
        stored = stored_mask(dataset, index)
        try:
            image, mask = dataset.raw(index)
        except DataError as err:
            report.errors.append(str(err))
            if stored is not None:
                report.count_values(stored, None)
            continue
        report.count_values(stored if stored is not None else mask.astype(np.int64), mask)
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


def refusal(
    dataset: Any, reports: list[Report], ignore_index: int | None, names: list[str]
) -> str | None:
    """Why a scanned dataset cannot be trained on as configured, in one line, or None.

    Refused: more than half of a split's pixels ignored, or a class that never appears in
    the train split (every split when there is none). Names the stored value at fault and
    suggests ``data.mask_values``.
    """
    if not reports:
        return None
    labels = len(reports[0].class_pixels)
    found = {k for r in reports for k in r.values}

    def label(cls: int) -> str:
        return f"class {cls} ({names[cls]})" if cls < len(names) else f"class {cls}"

    for report in reports:
        if report.pairs and report.ignored_share > MOSTLY_IGNORED:
            behind = {
                k: n
                for k, (n, _) in report.values.items()
                if ignore_index in report.value_classes.get(k, ())
            }
            value = max(behind, key=behind.get) if behind else ignore_index
            return (
                f"{100 * report.ignored_share:.1f} % of the {report.split} mask pixels are "
                f"ignored: stored value {show_value(dataset, value)} is read as "
                f"data.ignore_index={ignore_index}; if it marks a class, declare how classes "
                f"are stored, e.g. {suggest_encoding(dataset, found, labels)}"
            )
    train = [r for r in reports if r.split == "train"] or reports
    pixels = sum(r.class_pixels for r in train)
    missing = [c for c in range(labels) if pixels[c] == 0]
    if missing and any(r.pairs for r in train):
        where = "train split" if train[0].split == "train" else "dataset"
        shown = ", ".join(show_value(dataset, k) for k in sorted(found)[:10])
        return (
            f"{', '.join(label(c) for c in missing)} never appears in the {where}'s masks "
            f"(stored values found: {shown}); declare which stored value is which class, "
            f"e.g. {suggest_encoding(dataset, found, labels)}"
        )
    return None
