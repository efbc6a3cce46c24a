"""Colour palettes, mask overlays and image | truth | prediction grids."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def default_palette(num_classes: int) -> np.ndarray:
    """A distinct colour per class (the PASCAL VOC bit-interleaving scheme), uint8 (C, 3)."""
    palette = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
    for k in range(len(palette)):
        c, r, g, b = k, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette[k] = (r, g, b)
    return palette


def colorize(
    mask: np.ndarray, palette: Sequence[Sequence[int]] | np.ndarray, ignore_index: int | None = None
) -> np.ndarray:
    """An RGB picture of a class-index mask; ignored and unknown pixels are white."""
    palette = np.asarray(palette, dtype=np.uint8)
    out = np.full((*mask.shape, 3), 255, dtype=np.uint8)
    known = (mask >= 0) & (mask < len(palette))
    if ignore_index is not None:
        known &= mask != ignore_index
    out[known] = palette[mask[known]]
    return out


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    palette: Sequence[Sequence[int]] | np.ndarray,
    alpha: float = 0.5,
    background: int | None = 0,
) -> np.ndarray:
    """Blend the coloured mask onto an RGB or grayscale uint8 image (background left clear)."""
    if image.ndim == 2 or image.shape[-1] == 1:
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
    colours = colorize(mask, palette).astype(np.float32)
    blend = image.astype(np.float32) * (1 - alpha) + colours * alpha
    if background is not None:
        blend[mask == background] = image[mask == background]
    return blend.round().astype(np.uint8)


def grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile equally sized RGB uint8 panels into one picture, rows x columns, white gaps."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) - pad, cols * (w + pad) - pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, panel in enumerate(row):
            if panel.ndim == 2:
                panel = np.repeat(panel[..., None], 3, axis=-1)
            out[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = panel
    return out


def palette_for(num_classes: int, palette: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """The data config's palette when it has one colour per class, else the default one."""
    if palette is not None and len(palette) >= num_classes:
        return np.asarray(palette, dtype=np.uint8)
    return default_palette(max(num_classes, 2))


def to_uint8_image(
    image: np.ndarray | torch.Tensor,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    max_pixel_value: float = 255.0,
) -> np.ndarray:
    """A displayable HxWx3 uint8 picture of a normalised CHW tensor (or HWC array).

    Undoes albumentations' ``Normalize(mean, std, max_pixel_value)``; 16-bit or float
    originals are stretched to 0..255 for display.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
        if image.ndim == 3:
            image = image.transpose(1, 2, 0)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if mean is not None and std is not None:
        image = image * np.asarray(std, np.float32) * max_pixel_value
        image = image + np.asarray(mean, np.float32) * max_pixel_value
    if max_pixel_value != 255.0:
        image = image * (255.0 / max_pixel_value)
    image = np.clip(image, 0, 255).round().astype(np.uint8)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def to_display_image(image: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 picture of a raw image as read from disk (gray, RGB(A), 8 or 16 bit)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = image.astype(np.float32)
        top = float(image.max()) or 1.0
        image = (image / top * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def mask_to_pil(mask: np.ndarray, palette: Sequence[Sequence[int]] | np.ndarray) -> Image.Image:
    """A palette ("P" mode) PNG image of a class-index mask: indices stay exact, colours show."""
    picture = Image.fromarray(mask.astype(np.uint8), mode="P")
    flat = np.zeros((256, 3), dtype=np.uint8)
    palette = np.asarray(palette, dtype=np.uint8)[:256]
    flat[: len(palette)] = palette
    picture.putpalette(flat.reshape(-1).tolist())
    return picture


def comparison(
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    palette: Sequence[Sequence[int]] | np.ndarray,
    ignore_index: int | None = None,
    alpha: float = 0.5,
) -> np.ndarray:
    """One row image | truth overlay | prediction overlay, the picture of a failure case."""
    image = to_display_image(image)
    truth_shown = np.where(truth == ignore_index, 0, truth) if ignore_index is not None else truth
    return grid(
        [
            [
                image,
                overlay(image, truth_shown, palette, alpha),
                overlay(image, prediction, palette, alpha),
            ]
        ]
    )


def save_png(picture: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write an RGB uint8 array as PNG (nearest-neighbour upscaled by ``scale``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = Image.fromarray(picture)
    if scale > 1:
        out = out.resize((out.width * scale, out.height * scale), Image.NEAREST)
    out.save(path)
    return path
