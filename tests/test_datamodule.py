"""SegmentationDataModule builds loaders of the right shapes from the real configs."""

import pytest
import torch

from litseg.data.datamodule import SegmentationDataModule, default_num_workers
from litseg.errors import ConfigError
from litseg.utils.instantiate import build_datamodule


def test_loaders_give_normalised_images_and_int64_masks(make_cfg) -> None:
    dm = build_datamodule(make_cfg())
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (8, 64, 64) and batch["mask"].dtype == torch.int64
    assert -3 < batch["image"].mean() < 3 and batch["image"].std() > 0.5
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2, 3}
    assert len(dm.val_dataloader().dataset) == 16


def test_eval_transform_is_deterministic(make_cfg) -> None:
    dm = build_datamodule(make_cfg("augment=basic"))
    dm.setup("fit")
    a, b = dm.datasets["val"][0], dm.datasets["val"][0]
    torch.testing.assert_close(a["image"], b["image"])


def test_missing_and_empty_splits_are_named(make_cfg) -> None:
    dm = build_datamodule(make_cfg("~data.splits.test"))
    with pytest.raises(ConfigError, match="no 'test' split"):
        dm.setup("test")
    dm = build_datamodule(make_cfg("data.splits.val.length=0"))
    with pytest.raises(ConfigError, match="val split of data is empty"):
        dm.setup("fit")
    with pytest.raises(ConfigError, match="data.splits has unknown"):
        SegmentationDataModule(dataset=dict, splits={"holdout": {}}, task="binary", num_classes=1)


def test_default_workers_leave_a_core() -> None:
    assert 0 <= default_num_workers() <= 8


def test_mixed_sizes_pad_masks_with_the_fill_or_say_what_to_set() -> None:
    from litseg.data.datamodule import PadCollate
    from litseg.errors import DataError

    samples = [
        {"image": torch.ones(3, 4, 5), "mask": torch.zeros(4, 5, dtype=torch.long)},
        {"image": torch.ones(3, 6, 3), "mask": torch.ones(6, 3, dtype=torch.long)},
    ]
    batch = PadCollate(mask_fill=255)(samples)
    assert batch["image"].shape == (2, 3, 6, 5) and batch["mask"].shape == (2, 6, 5)
    assert (batch["mask"][0, 4:] == 255).all() and (batch["mask"][1, :, 3:] == 255).all()
    assert batch["image"][0, :, 4:].abs().sum() == 0 and batch["mask"][1, :, :3].eq(1).all()
    with pytest.raises(DataError, match="data.eval_batch_size=1"):
        PadCollate(mask_fill=None)(samples)
