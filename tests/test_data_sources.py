"""pets, voc and cityscapes (through torchvision) on small trees in each source's own layout,
built here; downloads are tested up to the network call, which is made to fail as offline."""

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from litseg.builders import build_datamodule
from litseg.data.datasets.cityscapes import CityscapesDataset, train_id_table
from litseg.errors import ConfigError, DataError

FAST = ["data.num_workers=0", "data.batch_size=2", "data.eval_batch_size=2", "augment=none"]


def save_rgb(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def save_label(path: Path, label: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        image.putpalette([v for k in range(256) for v in (k, 255 - k, k // 2)])
    image.save(path)


def pets_tree(root: Path) -> Path:
    base = root / "oxford-iiit-pet"
    lists = {"trainval": [], "test": []}
    for k in range(6):
        stem = f"Abyssinian_{k + 1}"
        save_rgb(base / "images" / f"{stem}.jpg", (20, 24))
        trimap = np.full((20, 24), 2)  # background
        trimap[5:15, 6:18] = 1  # pet
        trimap[5, 6:18] = 3  # border
        save_label(base / "annotations" / "trimaps" / f"{stem}.png", trimap)
        lists["test" if k == 5 else "trainval"].append(f"{stem} 1 1 1")
    for name, lines in lists.items():
        (base / "annotations" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize(("task", "labels"), [("binary", {0, 1}), ("multiclass", {0, 1, 2})])
def test_pets_trimaps_load_as_binary_or_three_classes(make_cfg, tmp_path, task, labels) -> None:
    root = pets_tree(tmp_path / "pets")
    dm = build_datamodule(
        make_cfg(
            "data=pets",
            f"data.root={root}",
            f"data.task={task}",
            "data.val_fraction=0.4",
            *FAST,
            tiny=False,
        )
    )
    dm.setup("fit")
    dm.setup("test")
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [3, 2, 1]
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 20, 24) and batch["mask"].dtype == torch.int64
    assert set(batch["mask"].unique().tolist()) == labels
    pet = batch["mask"][0, 10, 10].item()
    assert pet == (1 if task == "binary" else 0)


def test_pets_offline_says_how_to_point_data_root(make_cfg, tmp_path, monkeypatch) -> None:
    dm = build_datamodule(make_cfg("data=pets", f"data.root={tmp_path}", *FAST, tiny=False))
    with pytest.raises(
        DataError,
        match=r"Oxford-IIIT Pet not found under data.root=.*"
        r"set data.root=/path/to/a/local/copy or set data.download=true",
    ):
        dm.setup("fit")

    def offline(url: str, *args, **kwargs) -> None:
        assert url.startswith("https://")
        raise URLError("no network (test)")

    monkeypatch.setattr(
        "torchvision.datasets.oxford_iiit_pet.download_and_extract_archive", offline
    )
    dm = build_datamodule(
        make_cfg("data=pets", f"data.root={tmp_path}", "data.download=true", *FAST, tiny=False)
    )
    with pytest.raises(
        DataError,
        match=r"downloading Oxford-IIIT Pet .*failed.*no network.*"
        r"set data.root to a folder holding oxford-iiit-pet",
    ):
        dm.setup("fit")


def voc_tree(root: Path) -> Path:
    base = root / "VOCdevkit" / "VOC2012"
    for split, stems in {"train": ["2007_000001", "2007_000002"], "val": ["2007_000003"]}.items():
        for k, stem in enumerate(stems):
            save_rgb(base / "JPEGImages" / f"{stem}.jpg", (18 + k, 22))
            label = np.zeros((18 + k, 22))
            label[4:12, 4:12] = 15  # person
            label[4, 4:12] = 255  # border: ignored
            save_label(base / "SegmentationClass" / f"{stem}.png", label, palette=True)
        (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(stems))
    return root


def test_voc_palette_masks_and_mixed_sizes_batch_with_ignore_padding(
    make_cfg, tmp_path, monkeypatch
) -> None:
    root = voc_tree(tmp_path / "voc")
    dm = build_datamodule(make_cfg("data=voc", f"data.root={root}", *FAST, tiny=False))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))  # 18x22 and 19x22: padded to 19x22
    assert batch["image"].shape == (2, 3, 19, 22)
    assert set(batch["mask"].unique().tolist()) == {0, 15, 255}
    assert (batch["mask"][:, 18] == 255).all(dim=1).sum() == 1  # the padded row is ignored
    assert len(dm.datasets["val"]) == 1

    monkeypatch.setattr(
        "torchvision.datasets.voc.download_and_extract_archive",
        lambda url, *a, **k: (_ for _ in ()).throw(URLError("offline")),
    )
    dm = build_datamodule(
        make_cfg(
            "data=voc", f"data.root={tmp_path / 'empty'}", "data.download=true", *FAST, tiny=False
        )
    )
    with pytest.raises(DataError, match="downloading PASCAL VOC 2012 .*failed.*VOCdevkit"):
        dm.setup("fit")


def test_cityscapes_label_ids_become_train_ids(make_cfg, tmp_path) -> None:
    for split in ("train", "val"):
        city = "aachen" if split == "train" else "frankfurt"
        stem = f"{city}_000000_000019"
        save_rgb(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", (16, 32))
        label = np.full((16, 32), 7)  # road -> train id 0
        label[:, 16:] = 26  # car -> 13
        label[0] = 0  # unlabeled -> 255
        save_label(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label)
    dm = build_datamodule(make_cfg("data=cityscapes", f"data.root={tmp_path}", *FAST, tiny=False))
    dm.setup("fit")
    mask = dm.datasets["val"][0]["mask"]
    assert mask.shape == (16, 32) and set(mask.unique().tolist()) == {0, 13, 255}
    assert mask[5, 20].item() == 13 and mask[0, 0].item() == 255
    assert dm.class_names[13] == "car" and dm.num_classes == 19


def test_cityscapes_cannot_download_and_says_where_to_get_it(tmp_path) -> None:
    with pytest.raises(ConfigError, match="needs a login.*cityscapes-dataset.com.*data.root"):
        CityscapesDataset(tmp_path, download=True, num_classes=19, ignore_index=255)
    with pytest.raises(DataError, match="Cityscapes not found under data.root=.*leftImg8bit"):
        CityscapesDataset(tmp_path / "none", num_classes=19, ignore_index=255)


def test_cityscapes_yaml_names_are_torchvisions_train_ids(make_cfg) -> None:
    """conf/data/cityscapes.yaml holds the class names; they are torchvision's 19 train-id
    classes in train-id order, and unlabelled ids map to its ignore index."""
    from torchvision.datasets import Cityscapes

    cfg = make_cfg("data=cityscapes", tiny=False).data
    train_ids = sorted(
        (c for c in Cityscapes.classes if 0 <= c.train_id < 255), key=lambda c: c.train_id
    )
    assert list(cfg.class_names) == [c.name.replace(" ", "_") for c in train_ids]
    assert cfg.num_classes == len(train_ids) == len(cfg.palette)
    assert list(map(list, cfg.palette)) == [list(c.color) for c in train_ids]
    table = train_id_table(cfg.ignore_index)
    assert table[0] == cfg.ignore_index and table[26] == 13
