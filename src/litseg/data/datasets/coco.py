"""COCO instance annotations (polygons, RLE, crowd RLE) as semantic masks, made as images load.

    root/<train_json>                 a COCO instances JSON: images, annotations, categories
    root/<images>/<file_name>         the images it lists (file_name may hold sub-folders)

Classes: 0 is background, then the kept categories in category-id order: all of the train
JSON's categories, or those that ``categories`` names (by name or id). Annotations of other
categories are not drawn, so their pixels are background; images without annotations are all
background. ``iscrowd`` regions become ``ignore_index`` (losses and metrics skip them).

Overlaps (the documented rule): crowd regions are painted first, then the instances from the
largest pixel area to the smallest, so a small object lying on a larger one stays visible;
of two instances with equal areas the higher annotation id is painted last (on top).

Val comes from a second JSON (``val_json``) or, without one, is ``val_fraction`` of the train
JSON's images, picked with a fixed seed. Every annotation is checked when the split is built:
an unknown category, an image id that is not listed, a polygon outside its image, a malformed
segmentation (odd coordinates, a bounding box only, RLE of the wrong size) or a missing image
file is a DataError naming the JSON file and the annotation or image id.
"""

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from litseg.data.datasets.annotations import (
    check_num_classes,
    decode,
    inside,
    load_json,
    segmentation_rle,
)
from litseg.data.datasets.base import SegmentationDataset
from litseg.data.files import read_image
from litseg.data.splits import fraction_split
from litseg.errors import ConfigError, DataError

WHAT = "a COCO instances JSON (images, annotations, categories)"


@dataclass
class CocoImage:
    """One image of a COCO JSON and its checked annotations (crowd flag, class, segmentation)."""

    image_id: int
    path: Path
    height: int
    width: int
    # (annotation id, class index, iscrowd, segmentation as written)
    annotations: list[tuple[int, int, bool, Any]] = field(default_factory=list)


def _path(root: Path, name: str | Path) -> Path:
    path = Path(name)
    return path if path.is_absolute() else root / path


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_categories(data: Any, json_path: Path) -> list[tuple[int, str]]:
    """The (id, name) categories of a COCO JSON in id order, checked."""
    if not isinstance(data, dict):
        raise DataError(f"{json_path} holds a {type(data).__name__}; expected {WHAT}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{json_path} has no '{key}' list; expected {WHAT}")
    found: dict[int, str] = {}
    for cat in data["categories"]:
        if not isinstance(cat, dict) or not _int(cat.get("id")) or "name" not in cat:
            raise DataError(f"{json_path}: category {cat!r} has no integer id and name")
        if cat["id"] in found:
            raise DataError(f"{json_path}: category id {cat['id']} is listed twice")
        found[cat["id"]] = str(cat["name"])
    names = list(found.values())
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{json_path}: category name(s) {twice} belong to more than one id")
    if not found:
        raise DataError(f"{json_path} lists no categories; expected at least one")
    return sorted(found.items())


def kept_categories(
    categories: list[tuple[int, str]], chosen: Sequence[str | int] | None, json_path: Path
) -> list[tuple[int, str]]:
    """The categories that become classes: all, or those ``chosen`` names (by name or id),
    in id order."""
    if chosen is None:
        return categories
    if isinstance(chosen, str) or not isinstance(chosen, Sequence) or not chosen:
        raise ConfigError(
            f"data.categories={chosen!r}; expected a non-empty list of category names or ids"
        )
    by_name = {name: cid for cid, name in categories}
    ids = {cid for cid, _ in categories}
    wanted = set()
    for item in chosen:
        if isinstance(item, int) and not isinstance(item, bool) and item in ids:
            wanted.add(item)
        elif str(item) in by_name:
            wanted.add(by_name[str(item)])
        else:
            shown = ", ".join(name for _, name in categories[:20])
            raise ConfigError(
                f"data.categories names {item!r}, which is not a category of {json_path} "
                f"(its categories: {shown})"
            )
    return [(cid, name) for cid, name in categories if cid in wanted]


def coco_class_names(
    root: str | Path, train_json: str | Path, categories: Sequence[str | int] | None = None
) -> list[str]:
    """The class names of a COCO export: background, then the kept categories in id order.

    Read by the ``litseg.coco_classes`` resolver, so that data.class_names and
    data.num_classes follow from the JSON.
    """
    if not Path(root).is_dir():
        raise DataError(
            f"data.root={root} does not exist; expected a COCO export folder holding "
            f"{train_json} (data.train_json) and its images"
        )
    json_path = _path(Path(root), train_json)
    found = json_categories(load_json(json_path, f"{WHAT} (data.train_json)"), json_path)
    kept = kept_categories(found, categories, json_path)
    names = ["background", *(name for _, name in kept)]
    if "background" in names[1:]:
        raise DataError(
            f"{json_path} has a category named 'background', which would be class 0 twice; "
            "keep the others with data.categories=[...]"
        )
    return names


def config_class_names(
    root: str, train_json: str, categories: Sequence[str | int] | None, task: str
) -> list[str]:
    """data.class_names of data=coco: every class's name (multiclass), or the one output
    channel's name (binary: the kept category, or ``foreground`` for several)."""
    names = coco_class_names(root, train_json, None if categories is None else list(categories))
    if task == "binary":
        return names[1:] if len(names) == 2 else ["foreground"]
    return names


def read_coco(
    json_path: Path,
    image_dir: Path,
    root: Path,
    class_of: dict[str, int],
    known: set[str],
) -> list[CocoImage]:
    """Every image of a COCO JSON with its checked annotations, in image-id order.

    ``class_of`` maps the kept category names to class indices; categories in ``known`` but
    not kept are left out (background); any other category name is an error.
    """
    data = load_json(json_path, WHAT)
    # file names stay inside data.root, or inside an image folder the config puts elsewhere
    top, folder = Path(os.path.normpath(root)), Path(os.path.normpath(image_dir))
    bound = root if folder == top or top in folder.parents else image_dir
    cat_class: dict[int, int | None] = {}
    for cid, name in json_categories(data, json_path):
        if name in class_of:
            cat_class[cid] = class_of[name]
        elif name in known:
            cat_class[cid] = None
        else:
            raise DataError(
                f"{json_path}: category {cid} ({name!r}) is not a category of the train JSON; "
                "train and val must share their category names"
            )
    images: dict[int, CocoImage] = {}
    for record in data["images"]:
        if not isinstance(record, dict) or not _int(record.get("id")):
            raise DataError(f"{json_path}: image entry {record!r} has no integer id")
        where = f"{json_path}: image id {record['id']}"
        if record["id"] in images:
            raise DataError(f"{where} is listed twice")
        height, width = record.get("height"), record.get("width")
        if not (_int(height) and _int(width) and height > 0 and width > 0):
            raise DataError(f"{where} has no positive integer height and width")
        path = inside(bound, image_dir, record.get("file_name"), where)
        if not path.is_file():
            raise DataError(f"{where}: image file {path} does not exist (file_name in the JSON)")
        images[record["id"]] = CocoImage(record["id"], path, height, width)
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not _int(ann.get("id")):
            raise DataError(f"{json_path}: annotation {str(ann)[:60]} has no integer id")
        where = f"{json_path}: annotation id {ann['id']}"
        image = images.get(ann["image_id"]) if _int(ann.get("image_id")) else None
        if image is None:
            raise DataError(f"{where} names image_id {ann.get('image_id')!r}, which is not listed")
        if not _int(ann.get("category_id")) or ann["category_id"] not in cat_class:
            raise DataError(
                f"{where} has category_id {ann.get('category_id')!r}, which is not in the "
                "JSON's categories"
            )
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1):
            raise DataError(f"{where} has iscrowd={crowd!r}; expected 0 or 1")
        if "segmentation" not in ann:
            raise DataError(f"{where} has no segmentation (a box alone cannot become a mask)")
        # checked now, so a bad annotation stops setup instead of a training step
        segmentation_rle(ann["segmentation"], image.height, image.width, where, convert=False)
        cls = cat_class[ann["category_id"]]
        if cls is not None:
            image.annotations.append((ann["id"], cls, bool(crowd), ann["segmentation"]))
    return [images[i] for i in sorted(images)]


def coco_mask(image: CocoImage, ignore_index: int | None, where: str = "annotation") -> np.ndarray:
    """The semantic mask of one image (see the module docstring for the overlap rule)."""
    mask = np.zeros((image.height, image.width), dtype=np.int64)
    drawn = []
    for ann_id, cls, crowd, segm in image.annotations:
        pixels = decode(segmentation_rle(segm, image.height, image.width, f"{where} {ann_id}"))
        if crowd:
            mask[pixels] = ignore_index
        else:
            drawn.append((-int(pixels.sum()), ann_id, cls, pixels))
    for _, _, cls, pixels in sorted(drawn, key=lambda d: (d[0], d[1])):
        mask[pixels] = cls
    return mask


class CocoDataset(SegmentationDataset):
    """One split of a COCO instances export, as (image, semantic mask) pairs.

    Args:
        root: the export folder; JSON and image paths are relative to it.
        split: train, val or test.
        train_json: the train JSON; its categories define the classes.
        val_json: the val JSON; None takes ``val_fraction`` of the train JSON's images.
        test_json: the test JSON (needed for split=test).
        images, val_images, test_images: the folders (under root) that each JSON's
            file_name entries are relative to (val/test default to ``images``).
        categories: the category names (or ids) to keep; None keeps them all.
        task: multiclass (one class per kept category) or binary (any kept category is 1).
        num_classes: when given, must equal what the JSON gives.
        ignore_index: the mask value of crowd regions.
        in_channels: 1 (gray) or 3 (RGB) image channels.
        val_fraction, seed: the share of the train JSON's images that becomes val without a
            val JSON, and the fixed seed that picks it.
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        train_json: str = "annotations.json",
        val_json: str | None = None,
        test_json: str | None = None,
        images: str = "images",
        val_images: str | None = None,
        test_images: str | None = None,
        categories: Sequence[str | int] | None = None,
        task: str = "multiclass",
        num_classes: int | None = None,
        ignore_index: int | None = 255,
        in_channels: int = 3,
        val_fraction: float = 0.2,
        seed: int = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ConfigError(f"data split {split!r}; expected train, val or test")
        if task not in ("multiclass", "binary"):
            raise ConfigError(f"data.task={task!r}; data=coco supports multiclass or binary")
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"data.root={root} does not exist; expected a COCO export folder holding "
                f"{train_json} and {images}/"
            )
        train_path = _path(root, train_json)
        names = coco_class_names(root, train_json, categories)
        all_names = {name for _, name in json_categories(load_json(train_path, WHAT), train_path)}
        class_of = {name: (1 if task == "binary" else k) for k, name in enumerate(names) if k}
        derived = 1 if task == "binary" else len(names)
        check_num_classes(
            num_classes, derived, f"{train_path} (background + {len(names) - 1} kept categories)"
        )
        if ignore_index is not None and 0 <= ignore_index < max(derived, 2):
            raise ConfigError(
                f"data.ignore_index={ignore_index} is one of the {derived} classes; use 255"
            )
        if split == "train" or (split == "val" and val_json is None):
            json_path, image_dir = train_path, _path(root, images)
        elif split == "val":
            json_path, image_dir = _path(root, val_json), _path(root, val_images or images)
        else:
            if test_json is None:
                raise ConfigError("the test split needs data.test_json (a COCO JSON)")
            json_path, image_dir = _path(root, test_json), _path(root, test_images or images)
        items = read_coco(json_path, image_dir, root, class_of, all_names)
        crowd = next((a[0] for item in items for a in item.annotations if a[2]), None)
        if crowd is not None and ignore_index is None:
            raise ConfigError(
                f"{json_path}: annotation id {crowd} is a crowd region, which needs "
                "data.ignore_index (e.g. 255)"
            )
        if val_json is None and split in ("train", "val"):
            items = [items[i] for i in fraction_split(len(items), split, val_fraction, seed)]
            self.where = f"{json_path} ({split} part, val_fraction={val_fraction})"
        else:
            self.where = str(json_path)
        if not items:
            raise DataError(f"{self.where} lists no images; expected at least one")
        self.json_path, self.image_dir, self.items = json_path, image_dir, items
        self.class_names = names if task == "multiclass" else ["background", "foreground"]
        self.num_classes, self.ignore_index = derived, ignore_index
        self.in_channels, self.transform = in_channels, transform

    def __len__(self) -> int:
        return len(self.items)

    def image_path(self, index: int) -> Path:
        """The image file of item ``index`` (evaluation reports name it)."""
        return self.items[index].path

    def mask(self, index: int) -> np.ndarray:
        """The semantic mask of image ``index`` as int64 class indices."""
        return coco_mask(self.items[index], self.ignore_index, f"{self.json_path}: annotation id")

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed (uint8 HxWxC image, uint8 HxW mask) pair."""
        item = self.items[index]
        image = read_image(item.path, self.in_channels)
        if image.shape[:2] != (item.height, item.width):
            raise DataError(
                f"{self.json_path}: image id {item.image_id}: {item.path} is "
                f"{image.shape[1]}x{image.shape[0]} (WxH) but the JSON says "
                f"{item.width}x{item.height}"
            )
        mask = self.mask(index)
        return image, mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.uint16)
