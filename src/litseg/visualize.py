"""Colour palettes, mask overlays and image | truth | prediction grids."""

from collections.abc import Sequence

import numpy as np


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
