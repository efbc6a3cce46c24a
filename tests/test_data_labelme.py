"""data=labelme: masks made from LabelMe polygons and rectangles equal pycocotools'
rasterisation of the same outlines pixel for pixel (circles match the disc they describe),
shapes painted in file order, labels mapped by data.labels; both layouts; every kind of bad
shape or file named with its JSON file and shape; training from the CLI; the converter."""

import json
import math
import shlex
from pathlib import Path

import numpy as np
import pytest
from annotation_trees import CAR, PEDESTRIAN, components, polygons, scenes
from omegaconf import OmegaConf
from PIL import Image
from pycocotools import mask as mask_utils

from litseg.builders import build_datamodule
from litseg.data.datasets.labelme import LabelMeDataset
from litseg.errors import ConfigError, DataError, LitsegError
from litseg.evaluate import image_file
from tests.helpers import run_cli

LABELS = ["background", "car", "pedestrian", "pole"]
FAST = [
    "model.base_width=8",
    "model.depth=3",
    "data.batch_size=2",
    "data.eval_batch_size=2",
    "data.crop_size=64",
    "data.num_workers=0",
]


def shape(label: str, points, kind: str = "polygon") -> dict:
    return {"label": label, "points": points, "group_id": None, "shape_type": kind, "flags": {}}


def pairs(flat: list[float]) -> list[list[float]]:
    return [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)]


def write_labelme(json_path: Path, image_path: str, image: np.ndarray, label: np.ndarray) -> None:
    """One LabelMe JSON for a scene: an ignored region, cars as polygons, pedestrians as
    rectangles (corners in either order), a small square under a later large rectangle (file
    order: the rectangle wins), and one circle, painted last."""
    height, width = label.shape
    target = (json_path.parent / image_path.replace("\\", "/")).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(target)
    shapes = []
    for region in components(label, CAR):
        shapes += [shape("car", pairs(p)) for p in polygons(region)]
    for n, region in enumerate(components(label, PEDESTRIAN, min_area=10)):
        ys, xs = np.nonzero(region)
        corners = [[int(xs.min()), int(ys.min())], [int(xs.max()) + 1, int(ys.max()) + 1]]
        shapes.append(shape("pedestrian", corners[::-1] if n % 2 else corners, "rectangle"))
    shapes.append(shape("__ignore__", [[0, 0], [40, 0], [40, 12], [0, 12]]))
    shapes.append(shape("pedestrian", [[60, 30], [70, 30], [70, 40], [60, 40]]))  # hidden
    shapes.append(shape("car", [[80, 45], [50, 20]], "rectangle"))  # drawn over it
    shapes.append(
        shape("pole", [[width - 20.0, height - 20.0], [width - 12.0, height - 14.0]], "circle")
    )
    data = {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data))


def make_tree(root: Path) -> Path:
    """root/{train,val}/*.json; train images beside their JSON except one kept in
    root/images/ and named with a Windows-style relative path."""
    for k, (name, image, label) in enumerate(scenes(3)):
        path = f"..\\images\\{name}.png" if k == 0 else f"{name}.png"
        write_labelme(root / "train" / f"{name}.json", path, image, label)
    for name, image, label in scenes(1, offset=5):
        write_labelme(root / "val" / f"{name}.json", f"{name}.png", image, label)
    return root


def expected_mask(json_path: Path) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """pycocotools' rasterisation of the JSON's polygons and rectangles, painted in file
    order (ignored -> 255), and the circles as (cx, cy, r), which are checked as discs."""
    data = json.loads(json_path.read_text())
    height, width = data["imageHeight"], data["imageWidth"]
    mask = np.zeros((height, width), dtype=np.int64)
    circles = []
    for item in data["shapes"]:
        points = item["points"]
        if item["shape_type"] == "circle":
            (cx, cy), (px, py) = points
            circles.append((cx, cy, math.hypot(px - cx, py - cy)))
            continue
        if item["shape_type"] == "rectangle":
            (x0, y0), (x1, y1) = points
            points = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        flat = [v for p in points for v in p]
        rle = mask_utils.merge(mask_utils.frPyObjects([flat], height, width))
        cls = 255 if item["label"] == "__ignore__" else LABELS.index(item["label"])
        mask[mask_utils.decode(rle) == 1] = cls
    return mask, circles


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("labelme"))


def test_masks_equal_pycocotools_and_shapes_paint_in_file_order(tree) -> None:
    for split in ("train", "val"):
        dataset = LabelMeDataset(tree, split, labels=LABELS)
        assert len(dataset) == (3 if split == "train" else 1)
        for index, item in enumerate(dataset.items):
            image, mask = dataset.raw(index)
            expected, circles = expected_mask(item.json_path)
            assert image.shape == (*mask.shape, 3)
            ys, xs = np.mgrid[: mask.shape[0], : mask.shape[1]]
            rim = np.zeros(mask.shape, dtype=bool)
            for cx, cy, r in circles:
                distance = np.hypot(xs - cx, ys - cy)
                assert (mask[distance < r - 1.5] == LABELS.index("pole")).all()
                rim |= distance <= r + 1.5
            np.testing.assert_array_equal(mask[~rim], expected[~rim], err_msg=str(item.json_path))
            # file order: the later large rectangle covers the earlier small square
            assert mask[35, 65] == LABELS.index("car")
            assert (mask[:12, :40] == 255).all()
    assert dataset.items[0].image_path.parent.name == "val"
    first = LabelMeDataset(tree, "train", labels=LABELS).items[0]
    assert first.image_path == tree / "images" / f"{first.json_path.stem}.png"


def test_eval_reports_name_each_image_file(tree) -> None:
    dataset = LabelMeDataset(tree, "train", labels=LABELS)
    names = [image_file(dataset, k, str(tree)) for k in range(len(dataset))]
    # each JSON's imagePath, relative to the data root (images/ or beside the JSON)
    assert names == [item.image_path.relative_to(tree).as_posix() for item in dataset.items]
    assert {name.split("/")[0] for name in names} == {"images", "train"}


def test_single_pool_splits_and_the_config_follows_the_labels(make_cfg, tmp_path) -> None:
    for k, (name, image, label) in enumerate(scenes(4)):
        write_labelme(tmp_path / "pool" / f"{k}_{name}.json", f"{k}_{name}.png", image, label)
    args = dict(root=tmp_path / "pool", labels=LABELS, val_fraction=0.25)
    train, val = LabelMeDataset(split="train", **args), LabelMeDataset(split="val", **args)
    assert (len(train), len(val)) == (3, 1)
    assert not {i.json_path for i in train.items} & {i.json_path for i in val.items}
    assert [i.json_path for i in val.items] == [
        i.json_path for i in LabelMeDataset(split="val", **args).items
    ]
    cfg = make_cfg(
        "data=labelme",
        f"data.root={tmp_path / 'pool'}",
        f"data.labels=[{','.join(LABELS)}]",
        "augment=none",
        "data.num_workers=0",
        tiny=False,
    )
    OmegaConf.resolve(cfg)
    assert cfg.data.num_classes == cfg.model.num_classes == 4
    assert list(cfg.data.class_names) == LABELS
    dm = build_datamodule(cfg)
    dm.setup("fit")
    batch = dm.datasets["val"][0]
    assert batch["mask"].shape == batch["image"].shape[1:]
    binary = LabelMeDataset(split="val", task="binary", **args)
    assert set(np.unique(binary.mask(0)).tolist()) <= {0, 1, 255}
    np.testing.assert_array_equal(binary.mask(0) == 1, np.isin(val.mask(0), [1, 2, 3]))
    cfg = make_cfg(
        "data=labelme",
        f"data.root={tmp_path}",
        "data.labels=[bg,cat]",
        "data.task=binary",
        "loss=dice_bce",
        tiny=False,
    )
    assert cfg.data.num_classes == 1 and list(cfg.data.class_names) == ["cat"]


def test_labels_and_num_classes_mistakes_name_the_key(make_cfg, tree) -> None:
    cfg = make_cfg("data=labelme", f"data.root={tree}", tiny=False)
    with pytest.raises(Exception, match="data.labels is not set") as err:
        OmegaConf.resolve(cfg)
    assert isinstance(err.value.__context__, LitsegError)
    cfg = make_cfg(
        "data=labelme",
        f"data.root={tree}",
        "data.labels=[background,car,pedestrian,pole]",
        "data.num_classes=3",
        tiny=False,
    )
    with pytest.raises(
        ConfigError, match=r"data.num_classes=3 but data.labels \(4 labels\) gives 4"
    ):
        build_datamodule(cfg).setup("fit")
    with pytest.raises(ConfigError, match=r"data.labels names \['car'\] more than once"):
        LabelMeDataset(tree, "train", labels=["background", "car", "car"])


def small_tree(root: Path) -> Path:
    """One 30x20 image with a cat polygon and a dog rectangle: the base each bad case damages."""
    root.mkdir(parents=True)
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(root / "a.png")
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(root / "b.png")
    for name in ("a", "b"):
        data = {
            "shapes": [
                shape("cat", [[1, 1], [9, 1], [9, 9]]),
                shape("dog", [[2, 2], [12, 14]], "rectangle"),
            ],
            "imagePath": f"{name}.png",
            "imageData": None,
            "imageHeight": 20,
            "imageWidth": 30,
        }
        (root / f"{name}.json").write_text(json.dumps(data))
    return root


BAD = {
    "unknown label": (
        lambda d: d["shapes"][1].update(label="horse"),
        r"shape 1 \(label 'horse'\): the label is not in data.labels",
    ),
    "line shape": (
        lambda d: d["shapes"][1].update(shape_type="line"),
        r"shape 1 \(label 'dog'\) is a 'line' shape; data=labelme draws polygon, rectangle",
    ),
    "two-point polygon": (
        lambda d: d["shapes"][0].update(points=[[1, 1], [9, 9]]),
        r"shape 0 \(label 'cat'\): polygon has 4 coordinates",
    ),
    "out-of-bounds point": (
        lambda d: d["shapes"][1].update(points=[[2, 2], [12, 44]]),
        r"shape 1 \(label 'dog'\): polygon reaches x 2..12, y 2..44 outside the 30x20",
    ),
    "three-point rectangle": (
        lambda d: d["shapes"][1].update(points=[[2, 2], [12, 14], [3, 3]]),
        r"shape 1 \(label 'dog'\): a rectangle takes 2 points, it has 3",
    ),
    "malformed points": (
        lambda d: d["shapes"][0].update(points=[[1, 1], [9], [9, 9]]),
        r"shape 0 \(label 'cat'\): points .* are not a list of \[x, y\] pairs",
    ),
    "non-numeric points": (
        lambda d: d["shapes"][0].update(points=[[1, 1], ["x", 1], [9, 9]]),
        r"shape 0 \(label 'cat'\): polygon .* is not a list of finite numbers",
    ),
    "missing image": (
        lambda d: d.update(imagePath="gone.png"),
        r"image file .*gone.png does not exist",
    ),
    "imagePath climbing out": (
        lambda d: d.update(imagePath="../../etc/hostname"),
        r"imagePath: file name '../../etc/hostname' leads outside .*\(data.root or",
    ),
    "absolute imagePath": (
        lambda d: d.update(imagePath="C:\\Users\\me\\a.png"),
        r"imagePath: file name .* is an absolute path",
    ),
    "no image size": (
        lambda d: d.pop("imageWidth"),
        r"has no positive integer imageHeight and imageWidth",
    ),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_shapes_stop_setup_naming_the_json_and_shape(make_cfg, tmp_path, kind) -> None:
    root = small_tree(tmp_path / "d")
    damage, message = BAD[kind]
    data = json.loads((root / "b.json").read_text())
    damage(data)
    (root / "b.json").write_text(json.dumps(data))
    cfg = make_cfg(
        "data=labelme",
        f"data.root={root}",
        "data.labels=[background,cat,dog]",
        "data.val_fraction=0.5",
        tiny=False,
    )
    with pytest.raises(DataError, match=str(root / "b.json") + ".*" + message):
        build_datamodule(cfg).setup("fit")


def test_an_image_that_differs_from_its_json_size_is_named(tmp_path) -> None:
    root = small_tree(tmp_path / "d")
    Image.fromarray(np.zeros((20, 31, 3), np.uint8)).save(root / "b.png")
    labels = ["background", "cat", "dog"]
    splits = [LabelMeDataset(root, s, labels=labels, val_fraction=0.5) for s in ("train", "val")]
    dataset = next(d for d in splits if d.items[0].json_path.name == "b.json")
    index = 0
    with pytest.raises(DataError, match=r"b.json: .*b.png is 31x20 \(WxH\) but imageWidth"):
        dataset.raw(index)


@pytest.mark.slow
def test_train_cli_on_labelme_and_the_converter_for_folder(tree, tmp_path) -> None:
    labels = f"data.labels=[{','.join(LABELS)}]"
    run = run_cli(
        "train.py",
        "data=labelme",
        f"data.root={tree}",
        labels,
        "debug=fdr",
        *FAST,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    bad = run_cli(
        "train.py",
        "data=labelme",
        f"data.root={tree}",
        "debug=fdr",
        *FAST,
        f"hydra.run.dir={tmp_path / 'bad'}",
    )
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert "litseg: error: data.labels is not set" in bad.stderr
    assert "Traceback" not in bad.stderr

    out = tmp_path / "converted"
    run = run_cli(
        "scripts/convert_annotations.py",
        "--out",
        str(out),
        "data=labelme",
        f"data.root={tree}",
        labels,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    dataset = LabelMeDataset(tree, "val", labels=LABELS)
    for index, item in enumerate(dataset.items):
        png = np.asarray(Image.open(out / "val" / "masks" / f"{item.image_path.stem}.png"))
        np.testing.assert_array_equal(png, dataset.mask(index))
    assert len(list((out / "train" / "images").iterdir())) == 3
    command = next(line for line in run.stdout.splitlines() if "data=folder" in line)
    trained = run_cli(
        "train.py",
        *shlex.split(command)[2:],
        "debug=fdr",
        *FAST,
        f"hydra.run.dir={tmp_path / 'folder'}",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
