"""A generated multiclass dataset: circles, squares and triangles on textured noise.

Colours of shapes and backgrounds are drawn from one distribution, so a model must learn
shape rather than colour. Every sample is a pure function of (seed, split, index): no file,
no network, and the same images on every machine.
"""

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from litseg.data.datasets.base import SegmentationDataset

# the shapes drawn, as mask values 1 (circle), 2 (square), 3 (triangle); 0 is background.
# Their names and colours are in conf/data/shapes.yaml.
SHAPE_KINDS = 3
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """An RGB field of random colours on a coarse grid, bilinearly upsampled to size x size."""
    grid = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
    field = Image.fromarray(grid).resize((size, size), Image.BILINEAR)
    return np.asarray(field, dtype=np.float32) / 255.0


def _shape_mask(rng: np.random.Generator, kind: int, size: int, min_r: float, max_r: float):
    """A boolean mask of one shape (1 circle, 2 square, 3 triangle) at a random place."""
    r = rng.uniform(min_r, max_r)
    cx, cy = rng.uniform(r * 0.6, size - r * 0.6, size=2)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == 1:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    else:
        corners = 4 if kind == 2 else 3
        angle = rng.uniform(0, 2 * np.pi)
        points = [
            (
                cx + r * np.cos(angle + 2 * np.pi * k / corners),
                cy + r * np.sin(angle + 2 * np.pi * k / corners),
            )
            for k in range(corners)
        ]
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def render_sample(
    rng: np.random.Generator,
    size: int = 64,
    max_shapes: int = 4,
    min_radius: float = 7.0,
    max_radius: float = 16.0,
    noise: float = 0.06,
) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, label uint8 HxW) pair; later shapes occlude earlier ones."""
    background = _smooth_noise(rng, size, int(rng.integers(2, 6)))
    image = background.copy()
    label = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        kind = int(rng.integers(1, SHAPE_KINDS + 1))
        mask = _shape_mask(rng, kind, size, min_radius, max_radius)
        # Redraw colours that would be nearly invisible against the background they cover.
        under = image[mask].mean(axis=0) if mask.any() else np.zeros(3)
        colour = rng.random(3)
        for _ in range(8):
            if np.abs(colour - under).sum() > 0.45:
                break
            colour = rng.random(3)
        texture = _smooth_noise(rng, size, int(rng.integers(3, 8)))
        fill = np.clip(colour * 0.75 + texture * 0.25, 0, 1)
        image[mask] = fill[mask]
        label[mask] = kind
    image = image + rng.normal(0, noise, image.shape)
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return image, label


class ShapesDataset(SegmentationDataset):
    """Generated shapes, multiclass (4 classes) or binary (shape vs background).

    Args:
        split: train, val or test; each split draws from its own random stream.
        length: number of samples in the split.
        task: multiclass (background + 3 shape classes) or binary (any shape = 1).
        image_size: height and width in pixels.
        seed: base seed; the same seed gives the same images everywhere.
        transform: albumentations-style callable ``transform(image=..., mask=...) -> dict``.
        render: keyword arguments for :func:`render_sample`.
    """

    def __init__(
        self,
        split: str = "train",
        length: int = 2000,
        task: str = "multiclass",
        image_size: int = 64,
        seed: int = 0,
        transform: Callable[..., dict[str, Any]] | None = None,
        **render: Any,
    ) -> None:
        if split not in SPLIT_IDS:
            raise ValueError(f"data split {split!r}; expected one of {', '.join(SPLIT_IDS)}")
        if task not in ("multiclass", "binary"):
            raise ValueError(f"data.task={task!r}; shapes supports multiclass or binary")
        self.split, self.length, self.task = split, length, task
        self.image_size, self.seed = image_size, seed
        self.transform = transform
        self.render = render

    def __len__(self) -> int:
        return self.length

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed (image, mask) pair at ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, SPLIT_IDS[self.split], index])
        image, label = render_sample(rng, self.image_size, **self.render)
        if self.task == "binary":
            label = (label > 0).astype(np.uint8)
        return image, label
