"""LabelMe per-image JSON (polygons, rectangles, circles) as semantic masks, made as images load.

Two layouts, as data=folder has:

    root/{train,val,test}/*.json     one folder per split (test optional)
    root/*.json                      one pool, split into train/val by val_fraction

Each JSON names its image in ``imagePath``, relative to the JSON's own folder (LabelMe's
default: the image beside it); the path may not leave data.root. Inline ``imageData`` is not
read. ``labels`` lists the class names in class order, background first: a shape's label is
its class, a label in ``ignore_labels`` (LabelMe's own ``__ignore__``) marks pixels
``ignore_index``, any other label is an error naming the JSON file and the shape.

Shapes: ``polygon`` (3 or more points), ``rectangle`` (two corners) and ``circle`` (centre
and a point on the rim, drawn as a polygon of one vertex per pixel of circumference, at
least 32). Polygons and rectangles are rasterised with pycocotools, exactly as COCO tools
draw the same polygon. Overlaps: shapes are painted in file order, so a later shape lies
on top of an earlier one, as LabelMe shows them and its own labelme2voc converter draws them.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from litseg.data.datasets.annotations import (
    check_num_classes,
    check_points,
    decode,
    inside,
    load_json,
    polygon_rle,
    resolve_classes,
)
from litseg.data.datasets.base import SegmentationDataset
from litseg.data.files import read_image
from litseg.data.splits import fraction_split
from litseg.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
SHAPES = ("polygon", "rectangle", "circle")
WHAT = "a LabelMe JSON (shapes, imagePath, imageHeight, imageWidth)"


@dataclass
class LabelMeImage:
    """One LabelMe JSON: its image and its shapes as (shape index, class, flat polygon)."""

    json_path: Path
    image_path: Path
    height: int
    width: int
    shapes: list[tuple[int, int, list[float]]] = field(default_factory=list)


def shape_polygon(shape: dict[str, Any], height: int, width: int, where: str) -> list[float]:
    """A LabelMe shape as a flat [x0, y0, x1, y1, ...] polygon, checked."""
    kind = shape.get("shape_type") or "polygon"  # LabelMe < 3.0 wrote no shape_type
    points = shape.get("points")
    if kind not in SHAPES:
        raise DataError(
            f"{where} is a {kind!r} shape; data=labelme draws {', '.join(SHAPES)} "
            "(lines and points have no area)"
        )
    if not isinstance(points, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 for p in points
    ):
        raise DataError(f"{where}: points {str(points)[:60]} are not a list of [x, y] pairs")
    flat = [v for point in points for v in point]
    if kind == "polygon":
        check_points(flat, height, width, where)
        return flat
    check_points(flat, height, width, where, minimum=2)
    if len(points) != 2:
        raise DataError(f"{where}: a {kind} takes 2 points, it has {len(points)}")
    (x0, y0), (x1, y1) = points
    if kind == "rectangle":
        return [x0, y0, x1, y0, x1, y1, x0, y1]
    radius = math.hypot(x1 - x0, y1 - y0)
    count = max(32, math.ceil(2 * math.pi * radius))
    ring = []
    for k in range(count):
        angle = 2 * math.pi * k / count
        ring += [x0 + radius * math.cos(angle), y0 + radius * math.sin(angle)]
    return ring  # a rim beyond the image is clipped, as LabelMe draws it


def read_labelme(
    json_path: Path, root: Path, class_of: dict[str, int], ignore_index: int | None
) -> LabelMeImage:
    """One LabelMe JSON with its checked shapes."""
    data = load_json(json_path, WHAT)
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DataError(f"{json_path} has no 'shapes' list; expected {WHAT}")
    height, width = data.get("imageHeight"), data.get("imageWidth")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise DataError(f"{json_path} has no positive integer imageHeight and imageWidth")
    image_path = inside(root, json_path.parent, data.get("imagePath"), f"{json_path}: imagePath")
    if not image_path.is_file():
        raise DataError(f"{json_path}: image file {image_path} does not exist (its imagePath)")
    item = LabelMeImage(json_path, image_path, height, width)
    for index, shape in enumerate(data["shapes"]):
        label = shape.get("label") if isinstance(shape, dict) else None
        where = f"{json_path}: shape {index} (label {label!r})"
        if not isinstance(shape, dict):
            raise DataError(f"{where} is not an object with label and points")
        if not isinstance(label, str) or label not in class_of:
            known = ", ".join(class_of)
            raise DataError(f"{where}: the label is not in data.labels (nor ignored): {known}")
        cls = class_of[label]
        if cls < 0 and ignore_index is None:
            raise ConfigError(f"{where} marks pixels ignored; set data.ignore_index (e.g. 255)")
        item.shapes.append((index, cls, shape_polygon(shape, height, width, where)))
    return item


def labelme_mask(item: LabelMeImage, ignore_index: int | None) -> np.ndarray:
    """The semantic mask of one LabelMe JSON: shapes painted in file order (later on top)."""
    mask = np.zeros((item.height, item.width), dtype=np.int64)
    for _, cls, polygon in item.shapes:
        mask[decode(polygon_rle(polygon, item.height, item.width))] = (
            ignore_index if cls < 0 else cls
        )
    return mask


def labelme_files(root: Path, split: str, val_fraction: float, seed: int) -> tuple[list[Path], str]:
    """The JSON files of ``split`` and a description of where they were found."""
    if split not in SPLITS:
        raise ConfigError(f"data split {split!r}; expected one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(
            f"data.root={root} does not exist; expected a folder of LabelMe JSON files "
            "(root/*.json or root/{train,val,test}/*.json)"
        )
    if (root / "train").is_dir():
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{folder} does not exist; expected the {split} LabelMe JSON there")
        return sorted(folder.glob("*.json")), str(folder)
    if split == "test":
        raise DataError(
            f"data.root={root} is a single pool of LabelMe JSON with no test split; add "
            "root/{train,val,test}/ folders or remove data.splits.test"
        )
    files = sorted(root.glob("*.json"))
    chosen = fraction_split(len(files), split, val_fraction, seed)
    return [files[i] for i in chosen], f"{root} ({split} part, val_fraction={val_fraction})"


def config_class_names(labels: Sequence[str] | None, task: str) -> list[str]:
    """data.class_names of data=labelme: ``data.labels`` (multiclass), or the one output
    channel's name (binary: the one non-background label, or ``foreground`` for several)."""
    names = resolve_classes(None if labels is None else list(labels), "data.labels")
    if task == "binary":
        return names[1:] if len(names) == 2 else ["foreground"]
    return names


class LabelMeDataset(SegmentationDataset):
    """One split of a folder of LabelMe JSON files, as (image, semantic mask) pairs.

    Args:
        root: the folder (see the module docstring for the layouts).
        split: train, val or test.
        labels: class names in class order, background first (``data.labels``).
        ignore_labels: labels whose shapes mark pixels ``ignore_index``.
        task: multiclass (one class per label) or binary (every label but the first is 1).
        num_classes: when given, must equal what ``labels`` gives.
        ignore_index: the mask value of ignored shapes.
        in_channels: 1 (gray) or 3 (RGB) image channels.
        val_fraction, seed: the share of a single pool that becomes val, and its fixed seed.
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        labels: Sequence[str] | None = None,
        ignore_labels: Sequence[str] = ("__ignore__",),
        task: str = "multiclass",
        num_classes: int | None = None,
        ignore_index: int | None = 255,
        in_channels: int = 3,
        val_fraction: float = 0.2,
        seed: int = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        if task not in ("multiclass", "binary"):
            raise ConfigError(f"data.task={task!r}; data=labelme supports multiclass or binary")
        names = resolve_classes(None if labels is None else list(labels), "data.labels")
        derived = 1 if task == "binary" else len(names)
        check_num_classes(num_classes, derived, f"data.labels ({len(names)} labels)")
        if ignore_index is not None and 0 <= ignore_index < max(derived, 2):
            raise ConfigError(
                f"data.ignore_index={ignore_index} is one of the {derived} classes; use 255"
            )
        class_of = {name: (min(k, 1) if task == "binary" else k) for k, name in enumerate(names)}
        for name in ignore_labels or ():
            if name in class_of:
                raise ConfigError(f"data.ignore_labels names {name!r}, which is in data.labels")
            class_of[str(name)] = -1
        root = Path(root)
        files, where = labelme_files(root, split, val_fraction, seed)
        if not files:
            raise DataError(f"no LabelMe JSON files found in {where}; expected at least one")
        self.items = [read_labelme(path, root, class_of, ignore_index) for path in files]
        self.where, self.class_names = where, names
        self.num_classes, self.ignore_index = derived, ignore_index
        self.in_channels, self.transform = in_channels, transform

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, index: int) -> Path:
        """The image file of item ``index`` (evaluation reports name it)."""
        return self.items[index].image_path

    def mask(self, index: int) -> np.ndarray:
        """The semantic mask of item ``index`` as int64 class indices."""
        return labelme_mask(self.items[index], self.ignore_index)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed (uint8 HxWxC image, uint8 HxW mask) pair."""
        item = self.items[index]
        image = read_image(item.image_path, self.in_channels)
        if image.shape[:2] != (item.height, item.width):
            raise DataError(
                f"{item.json_path}: {item.image_path} is {image.shape[1]}x{image.shape[0]} "
                f"(WxH) but imageWidth x imageHeight say {item.width}x{item.height}"
            )
        mask = self.mask(index)
        return image, mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.uint16)
