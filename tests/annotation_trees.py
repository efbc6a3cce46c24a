"""Small COCO and LabelMe exports for the data=coco / data=labelme tests, drawn from real
CamVid scenes and their human labels (synthetic scenes where the shared data is absent):
polygons are traced from the labelled objects, so they have real, irregular outlines."""

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

CAMVID = Path(os.environ["LITSEG_DATA_DIR"]) / "camvid"
# CamVid class indices used below
POLE, SIGN, CAR, PEDESTRIAN = 2, 6, 8, 9


def scenes(count: int, offset: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB image, CamVid label map) for ``count`` scenes: CamVid train images when
    present, else synthetic scenes with the same kinds of labelled objects."""
    if (CAMVID / "train").is_dir():
        names = sorted(p.name for p in (CAMVID / "train").glob("*.png"))
        # every 40th image: different streets, each with cars, poles and signs
        chosen = names[offset * 40 :: 40][:count]
        return [
            (
                Path(name).stem,
                np.asarray(Image.open(CAMVID / "train" / name).convert("RGB")),
                np.asarray(Image.open(CAMVID / "trainannot" / name)),
            )
            for name in chosen
        ]
    out = []
    for k in range(count):
        rng = np.random.default_rng(offset * 100 + k)
        label = Image.new("L", (120, 90), 0)
        draw = ImageDraw.Draw(label)
        for cls in (CAR, CAR, PEDESTRIAN, POLE):
            x, y = rng.integers(5, 100), rng.integers(5, 70)
            draw.ellipse([x, y, x + rng.integers(6, 20), y + rng.integers(6, 20)], fill=int(cls))
        draw.rectangle([96, 74, 112, 86], fill=SIGN)  # clear of the other shapes' centres
        label_map = np.asarray(label)
        image = (rng.random((90, 120, 3)) * 60 + label_map[..., None] * 20).astype(np.uint8)
        out.append((f"synthetic_{offset}_{k}", image, label_map))
    return out


def components(label: np.ndarray, cls: int, min_area: int = 40) -> list[np.ndarray]:
    """The connected regions of one class as uint8 0/1 masks (largest first, at most 6)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((label == cls).astype(np.uint8))
    order = sorted(range(1, count), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [
        (labels == i).astype(np.uint8) for i in order if stats[i, cv2.CC_STAT_AREA] >= min_area
    ][:6]


def polygons(region: np.ndarray) -> list[list[float]]:
    """The outer outlines of a 0/1 region as flat [x0, y0, ...] polygons of 3+ points."""
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def compressed_rle(region: np.ndarray) -> dict:
    """A region as COCO compressed RLE (counts as a string), as exporters write it."""
    rle = mask_utils.encode(np.asfortranarray(region.astype(np.uint8)))
    return {"counts": rle["counts"].decode("ascii"), "size": [int(v) for v in rle["size"]]}


def uncompressed_rle(region: np.ndarray) -> dict:
    """A region as COCO uncompressed RLE (column-major run lengths, starting with zeros), the
    form COCO uses for crowd regions."""
    flat = region.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"counts": [int(c) for c in counts], "size": list(region.shape)}
