"""The generated shapes dataset: deterministic, varied, and consistent with its labels."""

import numpy as np
import pytest

from litseg.data.datasets.shapes import SHAPE_KINDS, ShapesDataset

NUM_CLASSES = SHAPE_KINDS + 1  # background and the shapes


def test_same_seed_same_images_and_splits_differ() -> None:
    a, b = ShapesDataset("train", 10, seed=3), ShapesDataset("train", 10, seed=3)
    for i in range(10):
        np.testing.assert_array_equal(a.raw(i)[0], b.raw(i)[0])
        np.testing.assert_array_equal(a.raw(i)[1], b.raw(i)[1])
    val = ShapesDataset("val", 10, seed=3)
    assert not np.array_equal(a.raw(0)[0], val.raw(0)[0])
    assert not np.array_equal(a.raw(0)[0], ShapesDataset("train", 10, seed=4).raw(0)[0])


def test_labels_cover_every_class_and_colours_do_not_give_the_class_away() -> None:
    ds = ShapesDataset("train", 300)
    counts = np.zeros(NUM_CLASSES)
    mean_colour = {k: [] for k in range(1, NUM_CLASSES)}
    for i in range(len(ds)):
        image, label = ds.raw(i)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert label.shape == (64, 64) and label.dtype == np.uint8
        counts += np.bincount(label.ravel(), minlength=NUM_CLASSES)
        for k in mean_colour:
            if (label == k).any():
                mean_colour[k].append(image[label == k].mean(axis=0))
    assert (counts > 0).all()
    # Per-class average colours are alike: colour alone cannot separate the classes.
    centres = np.array([np.mean(v, axis=0) for v in mean_colour.values()])
    assert np.abs(centres[:, None] - centres[None]).max() < 20


def test_binary_task_merges_shapes() -> None:
    multi, binary = ShapesDataset("val", 5), ShapesDataset("val", 5, task="binary")
    for i in range(5):
        np.testing.assert_array_equal(binary.raw(i)[1], (multi.raw(i)[1] > 0).astype(np.uint8))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("holdout")
    with pytest.raises(ValueError, match="data.task"):
        ShapesDataset(task="multilabel")
    with pytest.raises(IndexError):
        ShapesDataset("train", 3).raw(3)


def test_config_names_every_class_the_generator_draws(make_cfg) -> None:
    data = make_cfg("data=shapes", tiny=False).data  # conf/data/shapes.yaml names the classes
    assert data.num_classes == len(data.class_names) == len(data.palette) == NUM_CLASSES
