"""data=coco: masks made from COCO polygons, RLE and crowd RLE equal pycocotools' own
``annToMask`` pixel for pixel under the documented class and overlap rules; subsets, splits,
every kind of bad annotation named with its JSON file and id; training from the CLI; and the
converter's PNGs training with data=folder."""

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from annotation_trees import (
    CAR,
    PEDESTRIAN,
    POLE,
    SIGN,
    components,
    compressed_rle,
    polygons,
    scenes,
    uncompressed_rle,
)
from omegaconf import OmegaConf
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import Subset

from litseg.builders import build_datamodule
from litseg.data.datasets.coco import CocoDataset
from litseg.errors import ConfigError, DataError, LitsegError
from litseg.evaluate import image_file
from tests.helpers import run_cli

# category ids are neither contiguous nor listed in order: classes follow id order
CATEGORIES = [
    {"id": 12, "name": "car"},
    {"id": 3, "name": "pole"},
    {"id": 20, "name": "pedestrian"},
    {"id": 7, "name": "sign_symbol"},
]
CLASS_OF = {3: 1, 7: 2, 12: 3, 20: 4}  # background 0, then ids 3, 7, 12, 20
NAMES = ["background", "pole", "sign_symbol", "car", "pedestrian"]
FAST = [
    "model.base_width=8",
    "model.depth=3",
    "data.batch_size=2",
    "data.eval_batch_size=2",
    "data.crop_size=64",
    "data.num_workers=0",
]


def export(root: Path, json_name: str, shots, first_image: int, subfolder: str = "") -> dict:
    """Write the images of ``shots`` under root/images and a COCO JSON describing them:
    cars as polygons, poles as compressed RLE, signs as one crowd region (uncompressed RLE),
    pedestrians as polygons; a large box drawn over a small triangle in the first image
    (listed first, so only the area rule keeps the triangle visible); the last image is left
    without annotations."""
    data = {"images": [], "annotations": [], "categories": CATEGORIES}
    ann_id = first_image * 1000
    for k, (name, image, label) in enumerate(shots):
        image_id = first_image + k
        file_name = f"{subfolder}{name}.png"
        (root / "images" / file_name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / file_name)
        height, width = label.shape
        data["images"].append(
            {"id": image_id, "file_name": file_name, "height": height, "width": width}
        )
        if k == len(shots) - 1:
            continue

        def add(category: int, segmentation, crowd: int = 0, image_id: int = image_id) -> None:
            nonlocal ann_id
            ann_id += 1
            data["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": segmentation,
                    "iscrowd": crowd,
                    "area": 0.0,  # data from the export, never trusted for the overlap rule
                    "bbox": [0, 0, 1, 1],
                }
            )

        if k == 0:
            add(20, [[30.0, 30.0, 50.0, 30.0, 40.0, 48.0]])  # small, listed first
            add(12, [[10.0, 10.0, 90.0, 10.0, 90.0, 70.0, 10.0, 70.0]])  # large, on it
        for region in components(label, CAR):
            add(12, polygons(region))
        for region in components(label, PEDESTRIAN, min_area=10):
            add(20, polygons(region))
        for region in components(label, POLE, min_area=10):
            add(3, compressed_rle(region))
        if (label == SIGN).any():
            add(7, uncompressed_rle((label == SIGN).astype(np.uint8)), crowd=1)
    (root / json_name).parent.mkdir(parents=True, exist_ok=True)
    (root / json_name).write_text(json.dumps(data))
    return data


def make_tree(root: Path) -> Path:
    """root/annotations/{train,val}.json over root/images (the train images in a sub-folder)."""
    export(root, "annotations/train.json", scenes(4), first_image=1, subfolder="seq/")
    export(root, "annotations/val.json", scenes(2, offset=5), first_image=100)
    return root


def expected_masks(
    json_path: Path, keep: dict[int, int], ignore: int = 255
) -> dict[str, np.ndarray]:
    """file_name -> the semantic mask built from pycocotools' annToMask with the documented
    rule: crowd regions ignored first, then instances from the largest area to the smallest
    (equal areas: higher id on top); categories not in ``keep`` are not drawn."""
    coco = COCO(str(json_path))
    out = {}
    for image_id, info in coco.imgs.items():
        mask = np.zeros((info["height"], info["width"]), dtype=np.int64)
        anns = [a for a in coco.imgToAnns[image_id] if a["category_id"] in keep]
        for ann in anns:
            if ann["iscrowd"]:
                mask[coco.annToMask(ann) == 1] = ignore
        solid = [(coco.annToMask(a), a) for a in anns if not a["iscrowd"]]
        for pixels, ann in sorted(solid, key=lambda s: (-int(s[0].sum()), s[1]["id"])):
            mask[pixels == 1] = keep[ann["category_id"]]
        out[info["file_name"]] = mask
    return out


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("coco"))


def test_masks_equal_pycocotools_pixel_for_pixel(tree) -> None:
    for split, json_name in (("train", "train.json"), ("val", "val.json")):
        dataset = CocoDataset(tree, split, "annotations/train.json", "annotations/val.json")
        expected = expected_masks(tree / "annotations" / json_name, CLASS_OF)
        assert len(dataset) == len(expected)
        seen = set()
        for index, item in enumerate(dataset.items):
            image, mask = dataset.raw(index)
            name = item.path.relative_to(tree / "images").as_posix()
            np.testing.assert_array_equal(mask, expected[name], err_msg=name)
            assert image.shape == (*mask.shape, 3) and image.dtype == np.uint8
            seen.update(np.unique(mask).tolist())
        # every drawing path took part: polygons, compressed RLE, crowd RLE, background
        assert {0, 1, 3, 255} <= seen, seen
    assert dataset.class_names == NAMES


def test_eval_reports_name_each_image_file(tree) -> None:
    dataset = CocoDataset(tree, "train", "annotations/train.json", "annotations/val.json")
    names = [image_file(dataset, k, str(tree)) for k in range(len(dataset))]
    assert names == [
        f"images/{item.path.relative_to(tree / 'images').as_posix()}" for item in dataset.items
    ]
    assert all(name.startswith("images/seq/") for name in names)  # file_name's sub-folder kept
    assert image_file(Subset(dataset, [2]), 0) == str(dataset.items[2].path)


def test_overlap_rule_crowd_and_empty_images(tree) -> None:
    dataset = CocoDataset(tree, "train", "annotations/train.json", "annotations/val.json")
    _, first = dataset.raw(0)
    # the small pedestrian triangle (annotation listed first) stays on top of the large box
    assert first[35, 40] == NAMES.index("pedestrian")
    assert first[15, 15] == NAMES.index("car")
    # crowd (sign) regions are the ignore index wherever no instance covers them
    data = json.loads((tree / "annotations" / "train.json").read_text())
    crowd = [a for a in data["annotations"] if a["iscrowd"] and a["image_id"] == 1]
    if crowd:
        region = crowd_region(crowd[0]["segmentation"])
        assert (first[region & (first != 255)] != 0).all()
        assert (first[region] == 255).any()
    # the last image has no annotations: all background
    _, last = dataset.raw(len(dataset) - 1)
    assert not last.any()


def crowd_region(segmentation: dict) -> np.ndarray:
    """An uncompressed RLE decoded by pycocotools."""
    height, width = segmentation["size"]
    return mask_utils.decode(mask_utils.frPyObjects(segmentation, height, width)).astype(bool)


def test_categories_subset_and_config_derived_classes(make_cfg, tree) -> None:
    cfg = make_cfg(
        "data=coco",
        f"data.root={tree}",
        "data.train_json=annotations/train.json",
        "data.val_json=annotations/val.json",
        "data.categories=[pedestrian,3]",  # by name and by id; classes follow id order
        "augment=none",
        tiny=False,
    )
    OmegaConf.resolve(cfg)
    assert list(cfg.data.class_names) == ["background", "pole", "pedestrian"]
    assert cfg.data.num_classes == cfg.model.num_classes == 3
    dm = build_datamodule(cfg)
    dm.setup("fit")
    dataset = dm.datasets["val"]
    expected = expected_masks(tree / "annotations" / "val.json", {3: 1, 20: 2})
    for index, item in enumerate(dataset.items):
        np.testing.assert_array_equal(dataset.mask(index), expected[item.path.name])
    # cars and the crowd sign regions of dropped categories are background, not ignored
    full = CocoDataset(tree, "val", "annotations/train.json", "annotations/val.json")
    assert (full.mask(0) == 3).any() and not (dataset.mask(0) == 255).any()
    binary = make_cfg(
        "data=coco",
        f"data.root={tree}",
        "data.train_json=annotations/train.json",
        "data.task=binary",
        "data.categories=[car]",
        "loss=dice_bce",
        tiny=False,
    )
    assert binary.data.num_classes == 1 and list(binary.data.class_names) == ["car"]


def test_val_fraction_splits_one_json_with_a_fixed_seed(tree) -> None:
    args = dict(root=tree, train_json="annotations/train.json", val_fraction=0.25)
    train, val = CocoDataset(split="train", **args), CocoDataset(split="val", **args)
    again = CocoDataset(split="val", **args)
    ids = lambda d: [item.image_id for item in d.items]  # noqa: E731
    assert (len(train), len(val)) == (3, 1)
    assert sorted(ids(train) + ids(val)) == [1, 2, 3, 4] and ids(val) == ids(again)
    with pytest.raises(ConfigError, match="data.val_fraction=1.5"):
        CocoDataset(split="val", **{**args, "val_fraction": 1.5})


def test_num_classes_and_categories_mistakes_name_the_key(make_cfg, tree) -> None:
    base = ["data=coco", f"data.root={tree}", "data.train_json=annotations/train.json"]
    cfg = make_cfg(*base, "data.num_classes=7", tiny=False)
    with pytest.raises(ConfigError, match=r"data.num_classes=7 but .*train.json .*gives 5"):
        build_datamodule(cfg).setup("fit")
    cfg = make_cfg(*base, "data.categories=[zebra]", tiny=False)
    with pytest.raises(Exception, match=r"data.categories names 'zebra'.*train.json") as err:
        OmegaConf.resolve(cfg)
    assert isinstance(err.value.__context__, LitsegError)


def small_tree(root: Path) -> Path:
    """Two 30x20 images and three annotations: the base that each bad case damages."""
    (root / "images").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(root / "images" / name)
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
            {"id": 2, "file_name": "b.png", "height": 20, "width": 30},
        ],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 1, 9, 1, 9, 9]]},
            {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[2, 2, 8, 2, 8, 8]]},
            {
                "id": 3,
                "image_id": 2,
                "category_id": 1,
                "iscrowd": 1,
                "segmentation": {"counts": [100, 20, 480], "size": [20, 30]},
            },
        ],
    }
    (root / "annotations.json").write_text(json.dumps(data))
    return root


BAD = {
    "out-of-bounds polygon": (
        lambda d: d["annotations"][1].update(segmentation=[[2, 2, 80, 2, 8, 8]]),
        r"annotation id 2: polygon reaches x 2..80, y 2..8 outside the 30x20",
    ),
    "unknown category": (
        lambda d: d["annotations"][1].update(category_id=9),
        r"annotation id 2 has category_id 9, which is not in the JSON's categories",
    ),
    "unknown image id": (
        lambda d: d["annotations"][1].update(image_id=77),
        r"annotation id 2 names image_id 77",
    ),
    "odd polygon": (
        lambda d: d["annotations"][1].update(segmentation=[[2, 2, 8, 2, 8]]),
        r"annotation id 2: polygon has 5 coordinates",
    ),
    "box-like polygon": (
        lambda d: d["annotations"][1].update(segmentation=[[2, 2, 8, 8]]),
        r"annotation id 2: polygon has 4 coordinates",
    ),
    "bbox only": (
        lambda d: d["annotations"][1].pop("segmentation"),
        r"annotation id 2 has no segmentation",
    ),
    "empty segmentation": (
        lambda d: d["annotations"][1].update(segmentation=[]),
        r"annotation id 2: segmentation is an empty list",
    ),
    "short RLE": (
        lambda d: d["annotations"][2]["segmentation"].update(counts=[100, 20, 40]),
        r"annotation id 3: RLE counts cover 160 pixels; the 30x20 image has 600",
    ),
    "RLE of another size": (
        lambda d: d["annotations"][2]["segmentation"].update(size=[10, 60]),
        r"annotation id 3: RLE size \[10, 60\] differs",
    ),
    "garbage compressed RLE": (
        lambda d: d["annotations"][2]["segmentation"].update(counts="ab\x7f"),
        r"annotation id 3: compressed RLE counts are malformed",
    ),
    "compressed RLE of another image": (
        lambda d: d["annotations"][2]["segmentation"].update(
            counts=compressed_rle(np.zeros((20, 35), np.uint8))["counts"]
        ),
        r"annotation id 3: RLE counts cover",
    ),
    "iscrowd not 0/1": (
        lambda d: d["annotations"][1].update(iscrowd="yes"),
        r"annotation id 2 has iscrowd='yes'",
    ),
    "missing image file": (
        lambda d: d["images"][1].update(file_name="gone.png"),
        r"image id 2: image file .*gone.png does not exist",
    ),
    "file_name climbing out": (
        lambda d: d["images"][1].update(file_name="../../secret.png"),
        r"image id 2: file name '../../secret.png' leads outside .*\(data.root or",
    ),
    "absolute file_name": (
        lambda d: d["images"][1].update(file_name="/etc/hostname"),
        r"image id 2: file name '/etc/hostname' is an absolute path",
    ),
    "image without size": (
        lambda d: d["images"][1].pop("height"),
        r"image id 2 has no positive integer height and width",
    ),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_annotations_stop_setup_naming_the_json_and_id(make_cfg, tmp_path, kind) -> None:
    root = small_tree(tmp_path / "d")
    damage, message = BAD[kind]
    data = json.loads((root / "annotations.json").read_text())
    damage(data)
    (root / "annotations.json").write_text(json.dumps(data))
    cfg = make_cfg("data=coco", f"data.root={root}", "data.val_fraction=0.5", tiny=False)
    with pytest.raises(DataError, match=str(root / "annotations.json") + ": " + message):
        build_datamodule(cfg).setup("fit")


def test_an_image_that_differs_from_its_json_size_is_named(tmp_path) -> None:
    root = small_tree(tmp_path / "d")
    Image.fromarray(np.zeros((21, 30, 3), np.uint8)).save(root / "images" / "b.png")
    dataset = CocoDataset(root, "train", val_json="annotations.json")
    with pytest.raises(DataError, match=r"annotations.json: image id 2: .*b.png is 30x21 \(WxH\)"):
        dataset.raw(1)


def test_crowd_regions_without_an_ignore_index_are_refused(tmp_path) -> None:
    root = small_tree(tmp_path / "d")
    with pytest.raises(ConfigError, match=r"annotation id 3 is a crowd region.*data.ignore_index"):
        CocoDataset(root, "train", val_json="annotations.json", ignore_index=None)


def test_an_image_folder_outside_the_root_bounds_the_file_names(tmp_path) -> None:
    root = small_tree(tmp_path / "d")
    (root / "images").rename(tmp_path / "elsewhere")
    dataset = CocoDataset(root, "train", val_json="annotations.json", images=tmp_path / "elsewhere")
    assert dataset.items[0].path == tmp_path / "elsewhere" / "a.png"
    data = json.loads((root / "annotations.json").read_text())
    data["images"][0]["file_name"] = "../d/annotations.json"
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"image id 1: file name '../d/annotations.json' leads"):
        CocoDataset(root, "train", val_json="annotations.json", images=tmp_path / "elsewhere")


def test_a_compressed_rle_from_pycocotools_round_trips() -> None:
    """The RLE string parser that guards the C decoder reads what pycocotools writes."""
    from litseg.data.datasets.annotations import rle_counts

    rng = np.random.default_rng(0)
    region = (rng.random((37, 23)) > 0.6).astype(np.uint8)
    counts = rle_counts(compressed_rle(region)["counts"])
    assert counts == uncompressed_rle(region)["counts"]
    assert sum(counts) == region.size


@pytest.mark.slow
def test_train_cli_on_a_coco_export_and_one_line_errors(tree, tmp_path) -> None:
    run = run_cli(
        "train.py",
        "data=coco",
        f"data.root={tree}",
        "data.train_json=annotations/train.json",
        "data.val_json=annotations/val.json",
        "debug=fdr",
        *FAST,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    stored = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")
    assert stored.data.train_json == "annotations/train.json"
    bad = run_cli(
        "train.py",
        "data=coco",
        f"data.root={tree}",
        "data.train_json=annotations/train.json",
        "data.categories=[zebra]",
        "debug=fdr",
        *FAST,
        f"hydra.run.dir={tmp_path / 'bad'}",
    )
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert "litseg: error: data.categories names 'zebra'" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_converter_pngs_equal_the_dataset_masks_and_train_with_folder(tree, tmp_path) -> None:
    out = tmp_path / "converted"
    run = run_cli(
        "scripts/convert_annotations.py",
        "--out",
        str(out),
        "data=coco",
        f"data.root={tree}",
        "data.train_json=annotations/train.json",
        "data.val_json=annotations/val.json",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    dataset = CocoDataset(tree, "train", "annotations/train.json", "annotations/val.json")
    for index, item in enumerate(dataset.items):
        name = item.path.relative_to(tree / "images").with_suffix("").as_posix().replace("/", "__")
        png = np.asarray(Image.open(out / "train" / "masks" / f"{name}.png"))
        np.testing.assert_array_equal(png, dataset.mask(index))
        assert (out / "train" / "images" / f"{name}.png").read_bytes() == item.path.read_bytes()
    assert len(list((out / "val" / "masks").iterdir())) == 2
    command = next(line for line in run.stdout.splitlines() if "data=folder" in line)
    args = shlex.split(command)[2:]  # after "python train.py"
    assert "data.num_classes=5" in args
    trained = run_cli("train.py", *args, "debug=fdr", *FAST, f"hydra.run.dir={tmp_path / 'run'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    again = run_cli(
        "scripts/convert_annotations.py", "--out", str(out), "data=coco", f"data.root={tree}"
    )
    assert again.returncode == 2 and "exists and is not an empty folder" in again.stderr
