"""data=folder: every image and mask format it claims, both layouts, and a clear error for
each kind of broken input, naming the file or folder at fault."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from litseg.builders import build_datamodule
from litseg.data.datasets.folder import FolderDataset
from litseg.data.files import read_image, read_mask
from litseg.errors import ConfigError, DataError
from tests.helpers import run_cli

PALETTE = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]


def write_pair(folder: Path, stem: str, label: np.ndarray, suffix: str = ".png") -> None:
    """An RGB image whose red channel encodes the label (label * 100), and its index mask."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    image = np.zeros((*label.shape, 3), dtype=np.uint8)
    image[..., 0] = np.where(label < 3, label * 100, 0)
    Image.fromarray(image).save(folder / "images" / f"{stem}{suffix}")
    Image.fromarray(label.astype(np.uint8)).save(folder / "masks" / f"{stem}.png")


def label_map(seed: int, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, size=size).astype(np.uint8)


def make_tree(root: Path, splits: dict[str, int]) -> Path:
    for split, count in splits.items():
        for k in range(count):
            write_pair(root / split, f"{split}_{k}", label_map(k))
    return root


def folder_cfg(make_cfg, root: Path, *overrides: str):
    return make_cfg(
        "data=folder",
        f"data.root={root}",
        "data.num_classes=3",
        "data.num_workers=0",
        "data.batch_size=2",
        *overrides,
        tiny=False,
    )


def test_split_folders_load_as_batches_with_optional_test(make_cfg, tmp_path) -> None:
    root = make_tree(tmp_path / "d", {"train": 4, "val": 2})
    dm = build_datamodule(folder_cfg(make_cfg, root, "augment=none"))
    assert "test" not in dm.split_args
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 32) and batch["mask"].dtype == torch.int64
    # augment=none only normalises, so the red channel still encodes each pixel's label.
    red = batch["image"][:, 0] * 0.229 + 0.485
    torch.testing.assert_close(red, batch["mask"].float() * 100 / 255, atol=1e-3, rtol=0)
    make_tree(root, {"test": 1})
    dm = build_datamodule(folder_cfg(make_cfg, root))
    dm.setup("test")
    assert len(dm.datasets["test"]) == 1


def test_single_pool_splits_by_val_fraction_with_a_fixed_seed(tmp_path) -> None:
    for k in range(10):
        write_pair(tmp_path, f"s{k}", label_map(k))
    train = FolderDataset(tmp_path, "train", num_classes=3, val_fraction=0.3)
    val = FolderDataset(tmp_path, "val", num_classes=3, val_fraction=0.3)
    again = FolderDataset(tmp_path, "val", num_classes=3, val_fraction=0.3)
    assert (len(train), len(val)) == (7, 3)
    assert not {p for p, _ in train.pairs} & {p for p, _ in val.pairs}
    assert val.pairs == again.pairs


@pytest.mark.parametrize(
    ("mode", "dtype", "suffix"),
    [
        ("L", np.uint8, ".png"),
        ("RGB", np.uint8, ".jpg"),
        ("RGBA", np.uint8, ".png"),
        ("I;16", np.uint16, ".png"),
        ("RGB", np.uint8, ".tif"),
        ("L", np.uint8, ".tiff"),
    ],
)
def test_image_formats_become_uint8_with_the_wanted_channels(tmp_path, mode, dtype, suffix) -> None:
    ramp = np.tile(np.linspace(0, 1, 32), (24, 1))
    if dtype == np.uint16:
        Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / f"x{suffix}")
    else:
        gray = (ramp * 255).astype(np.uint8)
        array = {
            "L": gray,
            "RGB": np.dstack([gray] * 3),
            "RGBA": np.dstack([gray] * 3 + [np.full_like(gray, 128)]),
        }[mode]
        Image.fromarray(array).save(tmp_path / f"x{suffix}")
    rgb, gray = read_image(tmp_path / f"x{suffix}", 3), read_image(tmp_path / f"x{suffix}", 1)
    assert rgb.shape == (24, 32, 3) and gray.shape == (24, 32, 1)
    assert rgb.dtype == gray.dtype == np.uint8
    # the full intensity range survives (16-bit is scaled, not clipped or wrapped)
    assert rgb[:, 0].max() <= 3 and rgb[:, -1].min() >= 250
    assert np.abs(gray[..., 0].astype(int) - rgb[..., 1].astype(int)).max() <= 3


def test_palette_and_colour_masks_decode_to_class_indices(tmp_path) -> None:
    label = label_map(1)
    palette_png = Image.fromarray(label, mode="P")
    palette_png.putpalette([v for colour in PALETTE for v in colour])
    palette_png.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), label)

    colour = np.array(PALETTE, dtype=np.uint8)[label]
    Image.fromarray(colour).save(tmp_path / "c.png")
    table = dict(enumerate(PALETTE))
    np.testing.assert_array_equal(read_mask(tmp_path / "c.png", colors=table), label)
    with pytest.raises(DataError, match=r"c\.png has colour \(0, 255, 0\).*not in data.colors"):
        read_mask(tmp_path / "c.png", colors={0: PALETTE[0], 1: PALETTE[1]})
    with pytest.raises(DataError, match=r"c\.png is an RGB mask.*data.mask_palette"):
        read_mask(tmp_path / "c.png")


def test_colour_masks_through_the_config(make_cfg, tmp_path) -> None:
    root = tmp_path / "d"
    for split in ("train", "val"):
        write_pair(root / split, "a", label_map(2))
        Image.fromarray(np.array(PALETTE, dtype=np.uint8)[label_map(2)]).save(
            root / split / "masks" / "a.png"
        )
    dm = build_datamodule(
        folder_cfg(
            make_cfg,
            root,
            "augment=none",
            "data.colors={0: [0, 0, 0], 1: [255, 0, 0], 2: [0, 255, 0]}",
        )
    )
    dm.setup("fit")
    assert torch.equal(dm.datasets["val"][0]["mask"], torch.from_numpy(label_map(2)).long())


def _break(root: Path, kind: str) -> str:
    """Damage a good tree one way; return what the error must name."""
    masks, images = root / "train" / "masks", root / "train" / "images"
    if kind == "truncated image":
        data = (images / "train_1.png").read_bytes()
        (images / "train_1.png").write_bytes(data[: len(data) // 2])
        return "train_1.png is unreadable"
    if kind == "size mismatch":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(masks / "train_2.png")
        return "train_2.png is 10x10 .*is 32x24"
    if kind == "out-of-range label":
        Image.fromarray(np.full((24, 32), 7, np.uint8)).save(masks / "train_3.png")
        return r"train_3.png has label value\(s\) \[7\] outside \[0, 3\)"
    if kind == "missing mask":
        (masks / "train_0.png").unlink()
        return "1 image.*have no mask.*train_0.png"
    if kind == "empty split":
        for path in (root / "val" / "images").iterdir():
            path.unlink()
        return "no image/mask pairs found in .*val"
    if kind == "missing root":
        return "data.root=.*nowhere does not exist"
    raise AssertionError(kind)


KINDS = [
    "truncated image",
    "size mismatch",
    "out-of-range label",
    "missing mask",
    "empty split",
    "missing root",
]


@pytest.mark.parametrize("kind", KINDS)
def test_broken_input_fails_at_setup_naming_the_culprit(make_cfg, tmp_path, kind) -> None:
    root = make_tree(tmp_path / "d", {"train": 4, "val": 2})
    expected = _break(root, kind)
    if kind == "missing root":
        root = tmp_path / "nowhere"
    dm = build_datamodule(folder_cfg(make_cfg, root))
    with pytest.raises(DataError, match=expected):
        dm.setup("fit")


@pytest.mark.slow
def test_train_cli_refuses_broken_data_with_one_line(tmp_path) -> None:
    root = make_tree(tmp_path / "d", {"train": 2, "val": 1})
    Image.fromarray(np.full((24, 32), 9, np.uint8)).save(root / "val" / "masks" / "val_0.png")
    run = run_cli(
        "train.py",
        "data=folder",
        f"data.root={root}",
        "data.num_classes=3",
        "data.num_workers=0",
        "trainer.fast_dev_run=true",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "val_0.png has label value(s) [9] outside [0, 3)" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_options_are_config_errors(tmp_path) -> None:
    for k in range(3):
        write_pair(tmp_path, f"s{k}", label_map(k))
    with pytest.raises(ConfigError, match="data.val_fraction=1.5"):
        FolderDataset(tmp_path, "val", val_fraction=1.5)
    with pytest.raises(DataError, match="single images/masks pool with no test split"):
        FolderDataset(tmp_path, "test")
