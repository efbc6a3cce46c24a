"""Palettes, palette PNGs, undoing normalisation, comparison rows."""

from pathlib import Path

import albumentations as A
import numpy as np
import torch
from PIL import Image

from litseg.data.transforms import Pipeline
from litseg.visualize import (
    comparison,
    default_palette,
    mask_to_pil,
    palette_for,
    save_png,
    to_display_image,
    to_uint8_image,
)


def test_palette_png_keeps_indices_and_colours(tmp_path: Path) -> None:
    mask = np.random.default_rng(0).integers(0, 11, (37, 53)).astype(np.uint8)
    palette = palette_for(11)
    mask_to_pil(mask, palette).save(tmp_path / "m.png")
    back = Image.open(tmp_path / "m.png")
    assert back.mode == "P"
    np.testing.assert_array_equal(np.asarray(back), mask)
    np.testing.assert_array_equal(np.asarray(back.convert("RGB"))[0, 0], palette[mask[0, 0]])


def test_palette_for_uses_the_config_palette_only_when_it_covers_every_class() -> None:
    given = [[1, 2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(palette_for(2, given), given)
    np.testing.assert_array_equal(palette_for(3, given), default_palette(3))


def test_to_uint8_image_undoes_the_training_normalisation() -> None:
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    mean, std = [0.41, 0.42, 0.43], [0.31, 0.31, 0.30]
    pipeline = Pipeline([A.Normalize(mean=mean, std=std, max_pixel_value=255.0)])
    tensor = pipeline(image=image, mask=np.zeros((20, 30), np.uint8))["image"]
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (3, 20, 30)
    np.testing.assert_array_equal(to_uint8_image(tensor, mean, std), image)
    gray = to_uint8_image(torch.zeros(1, 4, 5), [0.5], [0.25])
    assert gray.shape == (4, 5, 3) and (gray == 128).all()


def test_display_image_of_a_16_bit_gray_image() -> None:
    image = np.array([[0, 65535], [32768, 0]], dtype=np.uint16)
    shown = to_display_image(image)
    assert shown.shape == (2, 2, 3) and shown.dtype == np.uint8
    assert shown[0, 1, 0] == 255 and shown[0, 0, 0] == 0


def test_comparison_row_is_image_truth_prediction(tmp_path: Path) -> None:
    image = np.full((8, 10, 3), 100, np.uint8)
    truth = np.zeros((8, 10), np.int64)
    truth[2:4, 2:4] = 1
    truth[0, 0] = 255  # ignored pixel: drawn as background
    pred = np.zeros((8, 10), np.int64)
    row = comparison(image, truth, pred, [[0, 0, 0], [255, 0, 0]], ignore_index=255)
    assert row.shape == (8, 3 * 10 + 2 * 2, 3)
    np.testing.assert_array_equal(row[:, :10], image)
    assert row[2, 12 + 2, 0] > 100  # the truth panel shows class 1 in red
    np.testing.assert_array_equal(row[:, 24:], image)  # nothing predicted: the image as is
    path = save_png(row, tmp_path / "a" / "row.png", scale=2)
    assert Image.open(path).size == (2 * row.shape[1], 2 * row.shape[0])
