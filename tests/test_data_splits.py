"""The one train/val split helper: the same items in val as litseg chose before it was shared
(runs stay comparable), the train/val partition of the pool, and one line for a bad fraction."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litseg.data.datasets.folder import FolderDataset
from litseg.data.splits import fraction_split
from litseg.errors import ConfigError

# The val indices that folder.py and pets.py picked before the split was one helper (recorded
# from that code): a changed permutation or rounding would move files between train and val.
EARLIER_VAL = [
    ((10, 0.2, 0), [4, 6]),
    ((10, 0.2, 1), [4, 8]),
    ((25, 0.1, 0), [4, 19]),
    ((7, 0.5, 3), [1, 2, 5, 6]),
    ((1, 0.2, 0), []),
]


@pytest.mark.parametrize(("args", "val"), EARLIER_VAL, ids=[str(a) for a, _ in EARLIER_VAL])
def test_val_is_the_split_of_earlier_versions(args: tuple[int, float, int], val: list[int]) -> None:
    count, fraction, seed = args
    assert fraction_split(count, "val", fraction, seed) == val
    train = fraction_split(count, "train", fraction, seed)
    assert sorted(train + val) == list(range(count)) and train == sorted(train)


def test_folder_pool_uses_the_helper(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for k in range(10):
        Image.fromarray(np.full((8, 8, 3), k, np.uint8)).save(tmp_path / "images" / f"s{k}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "masks" / f"s{k}.png")
    val = FolderDataset(tmp_path, "val", num_classes=2, val_fraction=0.2, seed=0)
    assert [image.stem for image, _ in val.pairs] == ["s4", "s6"]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_a_fraction_outside_zero_one_names_the_key(fraction: float) -> None:
    with pytest.raises(ConfigError, match=rf"data.val_fraction={fraction}; expected"):
        fraction_split(10, "val", fraction, 0)
