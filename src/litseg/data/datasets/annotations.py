"""What data=coco and data=labelme share: annotation JSON read as data, checked, rasterised.

Annotation files are data the user did not write by hand: every field is checked before use,
a file name may not leave the data root, and every problem is a DataError naming the JSON
file and the annotation. Polygons and RLE are rasterised with pycocotools, exactly as its own
``COCO.annToMask`` does, so masks match what COCO tools show.
"""

import json
import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from litseg.errors import ConfigError, DataError

# polygon points may lie this many pixels outside the image (exporters round to the edge)
BOUNDS_TOLERANCE = 1.0


def load_json(path: Path, what: str) -> Any:
    """A JSON file parsed, cached by (path, mtime, size): the resolver that counts classes and
    each split's dataset read one export once per process."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; expected {what}") from None
    if not path.is_file():
        raise DataError(f"{path} is not a file; expected {what}")
    return _load_json(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load_json(path: str, mtime_ns: int, size: int) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err})") from None


def inside(root: Path, base: Path, name: Any, where: str) -> Path:
    """``base / name`` for a file name read from annotation JSON, refused unless it stays
    inside ``root``: no absolute paths, no drive letters, no ``..`` that climbs out.

    Backslashes (Windows exports) count as separators. The check is on the path as written,
    so symbolic links the user placed inside the root are followed as usual.
    """
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"{where}: file name {name!r} is not a non-empty string")
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise DataError(
            f"{where}: file name {name!r} is an absolute path; annotation files may only "
            f"name files inside {root} (data.root or the image folder)"
        )
    joined = Path(os.path.normpath(base / PurePosixPath(text)))
    top = Path(os.path.normpath(root))
    if joined != top and top not in joined.parents:
        raise DataError(
            f"{where}: file name {name!r} leads outside {root} (data.root or the image "
            "folder); annotation files may only name files inside it"
        )
    return joined


NUMBER_TYPES = {int, float}  # exactly: JSON true/false (bool) is not a coordinate


def check_points(
    coords: Sequence[float], height: int, width: int, where: str, minimum: int = 3
) -> None:
    """A flat [x0, y0, x1, y1, ...] polygon: numbers, at least ``minimum`` points, inside the
    image (within :data:`BOUNDS_TOLERANCE` pixels)."""
    # set(map(type, ...)) runs in C: setup checks every polygon of large exports
    if not isinstance(coords, list) or not set(map(type, coords)) <= NUMBER_TYPES:
        raise DataError(f"{where}: polygon {_short(coords)} is not a list of finite numbers")
    if len(coords) % 2 or len(coords) < 2 * minimum:
        raise DataError(
            f"{where}: polygon has {len(coords)} coordinates; expected x, y pairs of at "
            f"least {minimum} points"
        )
    if not math.isfinite(sum(coords)):  # a NaN or an infinity anywhere makes the sum one
        raise DataError(f"{where}: polygon {_short(coords)} is not a list of finite numbers")
    xs, ys = coords[0::2], coords[1::2]
    low_x, high_x, low_y, high_y = min(xs), max(xs), min(ys), max(ys)
    tol = BOUNDS_TOLERANCE
    if low_x < -tol or high_x > width + tol or low_y < -tol or high_y > height + tol:
        raise DataError(
            f"{where}: polygon reaches x {low_x:g}..{high_x:g}, y {low_y:g}..{high_y:g} "
            f"outside the {width}x{height} (WxH) image"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def rle_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``), so
    that malformed strings are refused before they reach the C decoder."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        more = True
        while more:
            if p >= len(text):
                raise ValueError("the string ends inside a number")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {text[p]!r} is not an RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            raise ValueError("a run length is negative")
        counts.append(x)
    return counts


def segmentation_rle(
    segm: Any, height: int, width: int, where: str, convert: bool = True
) -> dict[str, Any] | None:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) as one compressed
    RLE, checked first: what ``COCO.annToRLE`` computes for a well-formed one. With
    ``convert=False`` it is only checked (returns None): setup checks every annotation."""
    if isinstance(segm, list):
        if not segm:
            raise DataError(f"{where}: segmentation is an empty list; expected polygons or RLE")
        for polygon in segm:
            check_points(polygon, height, width, where)
        if not convert:
            return None
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if not isinstance(segm, dict) or "counts" not in segm or "size" not in segm:
        raise DataError(
            f"{where}: segmentation {_short(segm)} is neither a list of polygons nor an RLE "
            "dict with counts and size"
        )
    size = segm["size"]
    if not isinstance(size, list) or [v for v in size] != [height, width]:
        raise DataError(
            f"{where}: RLE size {_short(size)} differs from the image's [height, width] "
            f"[{height}, {width}]"
        )
    counts = segm["counts"]
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise DataError(f"{where}: RLE counts are not all non-negative integers")
        runs = counts
    elif isinstance(counts, str):
        try:
            runs = rle_counts(counts)
        except ValueError as err:
            raise DataError(f"{where}: compressed RLE counts are malformed ({err})") from None
    else:
        raise DataError(f"{where}: RLE counts {_short(counts)} are neither a list nor a string")
    if sum(runs) != height * width:
        raise DataError(
            f"{where}: RLE counts cover {sum(runs)} pixels; the {width}x{height} image has "
            f"{height * width}"
        )
    if not convert:
        return None
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    return {"counts": counts.encode("ascii"), "size": [height, width]}


def polygon_rle(coords: Sequence[float], height: int, width: int) -> dict[str, Any]:
    """One checked flat polygon as a compressed RLE."""
    return mask_utils.merge(mask_utils.frPyObjects([list(coords)], height, width))


def decode(rle: dict[str, Any]) -> np.ndarray:
    """An RLE as an HxW boolean mask."""
    return mask_utils.decode(rle).astype(bool)


def resolve_classes(names: Any, key: str) -> list[str]:
    """A config list of class names (e.g. ``data.labels``) as strings, refused when it is not
    set, not a list, or names a class twice."""
    if names is None:
        raise ConfigError(
            f"{key} is not set; list the class names in class order, background first, "
            f"e.g. {key}=[background,cat,dog]"
        )
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError(f"{key}={names!r}; expected a list of class names, background first")
    names = [str(n) for n in names]
    if len(names) < 2:
        raise ConfigError(f"{key}={names}; expected background and at least one class")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{key} names {twice} more than once; each class needs one name")
    return names


def check_num_classes(given: int | None, derived: int, source: str) -> None:
    """``data.num_classes`` set by hand must equal what the annotations give."""
    if given is not None and int(given) != derived:
        raise ConfigError(
            f"data.num_classes={given} but {source} gives {derived}; leave data.num_classes "
            "unset (it follows from the annotations)"
        )
