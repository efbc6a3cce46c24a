"""SegmentationDataModule builds loaders of the right shapes from the real configs, hands the
dataset what the data is, and refuses a data key nothing reads."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from litseg.builders import build_datamodule
from litseg.data.datamodule import SegmentationDataModule, check_data_keys, default_num_workers
from litseg.errors import ConfigError
from tests.helpers import TINY, run_cli


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


def test_a_misspelled_data_key_is_named_with_the_close_match(make_cfg) -> None:
    with pytest.raises(ConfigError, match=r"data\.bacth_size .*did you mean data\.batch_size\?"):
        build_datamodule(make_cfg("+data.bacth_size=8"))
    with pytest.raises(ConfigError, match=r"data\.fodl .*did you mean data\.fold\?"):
        check_data_keys(make_cfg("data=membrane", "+data.fodl=2", tiny=False))


def test_a_data_key_an_interpolation_reads_is_a_setting(make_cfg) -> None:
    # how a dataset config declares a setting of its own: data.<key> read by data.dataset
    cfg = make_cfg("+data.size=32", "data.dataset.image_size=${data.size}")
    dm = build_datamodule(cfg)
    assert dm.options == {"size": 32} and dm.make_dataset("val", None).raw(0)[0].shape[0] == 32
    # a checkpoint's stored config is resolved (nothing left to read its keys): not refused
    stored = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    check_data_keys(stored)


def test_the_dataset_gets_what_the_data_is_unless_its_config_sets_it(make_cfg, tmp_path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for k in range(4):
        Image.fromarray(np.full((8, 8, 3), k, np.uint8)).save(tmp_path / "images" / f"{k}.png")
        Image.fromarray(np.full((8, 8), k % 3, np.uint8)).save(tmp_path / "masks" / f"{k}.png")
    base = ("data=folder", f"data.root={tmp_path}", "data.num_classes=3", "data.in_channels=1")
    dataset = build_datamodule(make_cfg(*base, tiny=False)).make_dataset("train", None)
    assert (dataset.num_classes, dataset.ignore_index, dataset.in_channels) == (3, 255, 1)
    dataset = build_datamodule(
        make_cfg(*base, "+data.dataset.num_classes=4", tiny=False)
    ).make_dataset("train", None)
    assert dataset.num_classes == 4


def test_cli_refuses_a_misspelled_data_key_on_the_command_line_and_in_a_yaml(tmp_path) -> None:
    experiment = tmp_path / "conf" / "experiment"
    experiment.mkdir(parents=True)
    (experiment / "typo.yaml").write_text("# @package _global_\ndata:\n  bacth_size: 8\n")
    for args in (
        ["+data.bacth_size=8"],
        [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=typo"],
    ):
        run = run_cli("train.py", *args, *TINY, f"hydra.run.dir={tmp_path / 'run'}")
        lines = run.stderr.strip().splitlines()
        assert run.returncode == 2 and len(lines) == 1, run.stderr[-3000:]
        assert "data.bacth_size is not a data setting" in lines[0]
        assert "did you mean data.batch_size?" in lines[0]
        assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("option", ["folder", "coco", "labelme"])
def test_an_unset_root_is_named_before_anything_reads_it(make_cfg, option: str) -> None:
    # data.splits.test.when_exists reads data.root too; the message names data.root itself
    needs = {"folder": ["data.num_classes=3"], "labelme": ["data.labels=[bg,a]"]}
    cfg = make_cfg(f"data={option}", *needs.get(option, []), tiny=False)
    with pytest.raises(ConfigError, match=r"^config key 'data.root' is missing; set it"):
        build_datamodule(cfg)
