"""Masks in the encodings people have: data.mask_values / data.mask_palette declared in the data
config and checked at setup, 0/255 binary masks with data=folder data.task=binary out of the
box (on the real ISBI 2012 labels laid out as a folder dataset), and predicted masks written
back in the training masks' encoding."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from PIL import Image
from torch import nn

from litseg.builders import build_datamodule
from litseg.callbacks import CONFIG_KEY
from litseg.errors import ConfigError, DataError
from litseg.predict import load_predictor, predict
from litseg.train import train
from tests.helpers import SHARED_DATA, compose_config

MEMBRANE = SHARED_DATA / "isbi2012_membrane"
needs_membrane = pytest.mark.skipif(
    not (MEMBRANE / "label").is_dir(), reason=f"ISBI 2012 membrane data not found in {MEMBRANE}"
)
GRAY = ["data.in_channels=1", "data.mean=[0.4948]", "data.std=[0.1726]"]


def membrane_as_folder(root: Path) -> Path:
    """The ISBI 2012 slices as root/{images,masks} (symlinks): 0/255 labels, 255 = interior."""
    for sub, name in (("image", "images"), ("label", "masks")):
        (root / name).mkdir(parents=True)
        for path in sorted((MEMBRANE / sub).glob("*.png")):
            (root / name / path.name).symlink_to(path)
    return root


def write_tree(root: Path, masks: dict[str, dict[str, np.ndarray]]) -> Path:
    """root/<split>/{images,masks}: gray images that show the mask, and the masks as given."""
    for split, items in masks.items():
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for stem, mask in items.items():
            shown = (mask if mask.ndim == 2 else mask[..., 0]).astype(np.uint8)
            Image.fromarray(shown).save(root / split / "images" / f"{stem}.png")
            Image.fromarray(mask.astype(np.uint8)).save(root / split / "masks" / f"{stem}.png")
    return root


def blobs(seed: int, values: tuple[int, ...], size: tuple[int, int] = (24, 32)) -> np.ndarray:
    """A mask of the given stored values in random blocks of 4x4 pixels."""
    rng = np.random.default_rng(seed)
    small = rng.choice(values, size=(size[0] // 4, size[1] // 4))
    return np.kron(small, np.ones((4, 4), dtype=np.int64)).astype(np.uint8)


def folder(make_cfg, root: Path, *overrides: str):
    return make_cfg(
        "data=folder",
        f"data.root={root}",
        "data.num_workers=0",
        "data.batch_size=2",
        "augment=none",
        *overrides,
        tiny=False,
    )


def all_masks(dm, split: str) -> np.ndarray:
    dataset = dm.datasets[split]
    return np.stack([dataset[i]["mask"].numpy() for i in range(len(dataset))])


@pytest.mark.parametrize("foreground", [255, 1])
def test_binary_folder_masks_0_255_or_0_1_load_as_0_1_targets(make_cfg, tmp_path, foreground):
    stored = {s: {f"{s}{k}": blobs(k, (0, foreground)) for k in range(3)} for s in ("train", "val")}
    root = write_tree(tmp_path / "d", stored)
    dm = build_datamodule(folder(make_cfg, root, "data.task=binary"))
    dm.setup("fit")
    assert dm.num_classes == 1 and dm.ignore_index is None
    for split in ("train", "val"):
        expected = np.stack([m == foreground for m in stored[split].values()]).astype(np.int64)
        np.testing.assert_array_equal(all_masks(dm, split), expected)


@needs_membrane
def test_real_membrane_labels_as_a_folder_dataset_have_no_ignored_pixel(make_cfg, tmp_path):
    root = membrane_as_folder(tmp_path / "membrane")
    dm = build_datamodule(folder(make_cfg, root, "data.task=binary", *GRAY))
    dm.setup("fit")
    train_masks, val_masks = all_masks(dm, "train"), all_masks(dm, "val")
    assert set(np.unique(train_masks)) == set(np.unique(val_masks)) == {0, 1}
    # 255 (cell interior, 78 % of the pixels in the dataset's README) is class 1, none ignored
    share = np.concatenate([train_masks.ravel(), val_masks.ravel()]).mean()
    assert share == pytest.approx(0.78, abs=0.01)
    label = np.asarray(Image.open(dm.datasets["val"].pairs[0][1]))
    np.testing.assert_array_equal(val_masks[0], (label == 255).astype(np.int64))


@needs_membrane
@pytest.mark.parametrize("check", ["headers", "full"])
def test_0_255_masks_read_as_two_classes_with_255_ignored_are_refused_at_setup(
    make_cfg, tmp_path, check
):
    """The old silent failure: 255 taken as the ignore index, class 1 never seen, mIoU 0."""
    root = membrane_as_folder(tmp_path / "membrane")
    dm = build_datamodule(folder(make_cfg, root, "data.num_classes=2", f"data.check={check}"))
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    message = str(err.value)
    assert "train masks are 78." in message and "class(es) [1] never appear" in message
    assert "stored value 255 is read as data.ignore_index=255" in message
    assert "data.mask_values={0: 0, 255: 1}" in message and "data.task=binary" in message
    # declaring the encoding trains both classes with nothing ignored
    dm = build_datamodule(
        folder(make_cfg, root, "data.num_classes=2", "data.mask_values={0: 0, 255: 1}")
    )
    dm.setup("fit")
    assert set(np.unique(all_masks(dm, "val"))) == {0, 1}


def test_mask_values_map_stored_values_and_unlisted_ones_become_the_ignore_index(
    make_cfg, tmp_path
):
    stored = {s: {f"{s}{k}": blobs(k, (0, 128, 255)) for k in range(2)} for s in ("train", "val")}
    stored["train"]["train0"][:4, :4] = 7  # not declared
    root = write_tree(tmp_path / "d", stored)
    values = "data.mask_values={0: 0, 128: 1, 255: 2}"
    dm = build_datamodule(folder(make_cfg, root, "data.num_classes=3", values))
    dm.setup("fit")
    lut = {0: 0, 128: 1, 255: 2, 7: 255}
    expected = np.vectorize(lut.get)(stored["train"]["train0"])
    np.testing.assert_array_equal(dm.datasets["train"][0]["mask"].numpy(), expected)


@pytest.mark.parametrize("check", ["headers", "full"])
def test_unlisted_values_without_an_ignore_index_fail_at_setup_naming_file_and_value(
    make_cfg, tmp_path, check
) -> None:
    stored = {s: {f"{s}{k}": blobs(k, (0, 255)) for k in range(3)} for s in ("train", "val")}
    stored["train"]["train0"][8:12, 8:12] = 128
    root = write_tree(tmp_path / "d", stored)
    dm = build_datamodule(folder(make_cfg, root, "data.task=binary", f"data.check={check}"))
    with pytest.raises(DataError, match=r"train0\.png has value 128 \(first at x=8, y=8\) not in "):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.mask_values={0: 0, 255: 3}", r"data.mask_values maps 255 to 3: expected a class"),
        ("data.mask_values={0: 0, 128: 1}", r"gives no stored value for class\(es\) \[2\]"),
        ("data.mask_palette=[[0, 0, 0], [9, 9, 9]]", r"data.mask_palette has 2 colours"),
        ("data.mask_palette=[[0, 0, 0], [9, 9, 9], [9, 9, 9]]", r"share the colour \[9, 9, 9\]"),
    ],
)
def test_an_encoding_that_does_not_fit_the_classes_is_a_config_error(
    make_cfg, tmp_path, override, expected
) -> None:
    root = write_tree(tmp_path / "d", {s: {"a": blobs(0, (0, 128, 255))} for s in ("train", "val")})
    dm = build_datamodule(folder(make_cfg, root, "data.num_classes=3", override))
    with pytest.raises(ConfigError, match=expected):
        dm.setup("fit")


def test_colour_masks_decode_with_mask_palette(make_cfg, tmp_path) -> None:
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    labels = blobs(3, (0, 1, 2))
    colour = palette[labels]
    colour[:4, :4] = [9, 9, 9]  # a colour that is no class
    root = write_tree(tmp_path / "d", {s: {"a": colour} for s in ("train", "val")})
    given = "data.mask_palette=[[0, 0, 0], [255, 0, 0], [0, 0, 255]]"
    dm = build_datamodule(folder(make_cfg, root, "data.num_classes=3", given))
    dm.setup("fit")
    expected = labels.astype(np.int64)
    expected[:4, :4] = 255
    np.testing.assert_array_equal(dm.datasets["val"][0]["mask"].numpy(), expected)
    dm = build_datamodule(
        folder(make_cfg, root, "data.num_classes=3", given, "data.ignore_index=null")
    )
    with pytest.raises(
        DataError, match=r"a\.png has colour \(9, 9, 9\) .*not in data.mask_palette"
    ):
        dm.setup("fit")


@needs_membrane
@pytest.mark.slow
def test_tiny_training_on_0_255_folder_masks_learns_the_foreground(make_cfg, tmp_path) -> None:
    """Two epochs of a tiny U-Net on the ISBI 2012 slices as a 0/255 folder dataset."""
    root = membrane_as_folder(tmp_path / "membrane")
    cfg = make_cfg(
        "data=folder",
        f"data.root={root}",
        "data.task=binary",
        *GRAY,
        "loss=dice_bce",
        "augment=basic",
        "data.crop_size=128",
        "data.splits.val.length=2",
        "data.eval_batch_size=2",
        "data.batch_size=4",
        "trainer.max_epochs=2",
        "callbacks.early_stopping=null",
        "test=false",
    )
    result = train(cfg)
    metrics = result["metrics"]
    # binary mIoU is the foreground's IoU: 0 when 255 is ignored or the model never predicts it
    assert math.isfinite(metrics["val/mIoU"]) and metrics["val/mIoU"] > 0.0
    assert metrics["val/IoU_foreground"] == metrics["val/mIoU"]


def fake_checkpoint(cfg, path: Path, logits: list[float]) -> Path:
    """A checkpoint of ``cfg``'s model whose output is ``logits`` at every pixel (all weights 0,
    the head's bias set), with the resolved config stored as litseg's train.py stores it."""
    GlobalHydra.instance().clear()
    net: nn.Module = instantiate(cfg.model)
    with torch.no_grad():
        for param in net.parameters():
            param.zero_()
        head = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
        head.bias.copy_(torch.tensor(logits))
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, CONFIG_KEY: OmegaConf.to_container(cfg, resolve=True)}, path)
    return path


def predicted(tmp_path: Path, ckpt: Path, channels: int = 1) -> np.ndarray:
    """predict.py's mask for one 40x48 image, read back as stored."""
    image = np.random.default_rng(0).integers(0, 255, (40, 48, channels), dtype=np.uint8)
    Image.fromarray(image[..., 0] if channels == 1 else image).save(tmp_path / "in.png")
    out = tmp_path / "out"
    cfg = compose_config(
        "predict",
        ["progress=false", f"ckpt_path={ckpt}", f"input={tmp_path / 'in.png'}", f"output={out}"],
        tmp_path,
    )
    predict(cfg)
    GlobalHydra.instance().clear()
    return np.asarray(Image.open(out / "in.png"))


@needs_membrane
@pytest.mark.parametrize("stored_before_mask_values", [False, True])
def test_predicted_membrane_is_written_as_the_label_files_store_it(
    make_cfg, tmp_path, stored_before_mask_values
) -> None:
    """Membrane (class 1 with target=membrane, class 0 with target=interior) is written as 0
    and interior as 255, like the label files, also for checkpoints stored before
    data.mask_values existed."""
    label = np.asarray(Image.open(MEMBRANE / "label" / "0.png"))
    for target, membrane_logit in (("membrane", 8.0), ("interior", -8.0)):
        cfg = make_cfg("data=membrane", "loss=dice_bce", f"data.target={target}")
        if stored_before_mask_values:
            with open_dict(cfg):
                # the dataset node's interpolation first: pop() resolves what it removes
                cfg.data.dataset.pop("mask_values", None)
                cfg.data.pop("mask_values", None)
                cfg.data.pop("target_values", None)
        for logit, value in ((membrane_logit, 0), (-membrane_logit, 255)):
            out = tmp_path / f"{target}{logit}"
            out.mkdir()
            mask = predicted(out, fake_checkpoint(cfg, tmp_path / f"{target}{logit}.ckpt", [logit]))
            assert mask.dtype == label.dtype == np.uint8 and mask.shape == (40, 48)
            assert (mask == value).all(), (target, logit)


def test_predicted_masks_use_the_folder_datasets_declared_encoding(make_cfg, tmp_path) -> None:
    common = ("data=folder", f"data.root={tmp_path}", "loss=dice_ce")
    # multiclass {10: 0, 20: 1, 30: 2}: class 2 everywhere is written as 30, coloured as class 2
    cfg = make_cfg(*common, "data.num_classes=3", "data.mask_values={10: 0, 20: 1, 30: 2}")
    mask_png = tmp_path / "p"
    mask_png.mkdir()
    ckpt = fake_checkpoint(cfg, tmp_path / "mc.ckpt", [0, 0, 5])
    values = predicted(mask_png, ckpt, 3)
    assert (values == 30).all()
    picture = Image.open(mask_png / "out" / "in.png")
    assert picture.mode == "P"
    assert picture.getpalette()[30 * 3 : 31 * 3] == list(load_predictor(ckpt).palette[2])
    # colour masks: class 1 everywhere is written in class 1's colour
    cfg = make_cfg(*common, "data.num_classes=2", "data.mask_palette=[[0, 0, 0], [200, 10, 30]]")
    colour_dir = tmp_path / "c"
    colour_dir.mkdir()
    rgb = predicted(colour_dir, fake_checkpoint(cfg, tmp_path / "c.ckpt", [0, 5]), 3)
    assert rgb.shape == (40, 48, 3) and (rgb == [200, 10, 30]).all()
    # binary folder default {0: 0, 255: 1, 1: 1}: foreground written as 255, the first listed
    cfg = make_cfg(*common, "data.task=binary", "loss=dice_bce")
    binary_dir = tmp_path / "b"
    binary_dir.mkdir()
    assert (predicted(binary_dir, fake_checkpoint(cfg, tmp_path / "b.ckpt", [5]), 3) == 255).all()
