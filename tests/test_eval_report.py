"""eval.py's report: per-class tables (Markdown, CSV) and the worst images by IoU."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from sklearn.metrics import jaccard_score
from test_predict import train_checkpoint

from litseg.data.datasets.shapes import render_sample
from litseg.evaluate import evaluate, image_iou
from litseg.predict import load_predictor
from tests.helpers import compose_config


@pytest.mark.parametrize(
    ("pred", "truth", "task", "expected"),
    [
        ([[0, 1], [1, 2]], [[0, 1], [2, 2]], "multiclass", (1 + 0.5 + 0.5) / 3),
        ([[0, 0], [0, 0]], [[0, 0], [0, 0]], "binary", 1.0),  # nothing to find, nothing found
        ([[1, 1], [0, 0]], [[1, 0], [0, 0]], "binary", 0.5),
        (
            [[1, 3], [1, 0]],
            [[1, 9], [2, 0]],
            "multiclass",
            (1 + 0.5 + 0) / 3,
        ),  # 9 ignored, 3 absent
    ],
)
def test_image_iou(pred, truth, task: str, expected: float) -> None:
    got = image_iou(np.array(pred), np.array(truth), task, 4, ignore=9)
    assert got == pytest.approx(expected)


@pytest.mark.slow
def test_eval_writes_tables_and_the_worst_images(tmp_path: Path) -> None:
    ckpt = train_checkpoint(tmp_path / "train", "loss=ce")
    cfg = compose_config(
        "eval",
        [f"ckpt_path={ckpt}", "data.num_workers=0", "report.worst_k=3"],
        tmp_path / "eval",
    )
    try:
        result = evaluate(cfg)
    finally:
        GlobalHydra.instance().clear()
    run = Path(result["run_dir"])
    names = ["background", "circle", "square", "triangle"]

    with open(run / "test_metrics.csv") as f:
        rows = {(r["class"], r["metric"]): r["value"] for r in csv.DictReader(f)}
    for name in names:
        logged = result["metrics"][f"test/IoU_{name}"]
        assert float(rows[name, "IoU"]) == pytest.approx(logged, abs=1e-6, nan_ok=True)
    assert sum(float(rows[n, "pixel_share"]) for n in names) == pytest.approx(1.0, abs=1e-5)
    assert sum(int(rows[n, "pixels"]) for n in names) == 16 * 64 * 64
    miou = result["metrics"]["test/mIoU"]
    assert float(rows["all", "mIoU"]) == pytest.approx(miou, abs=1e-6)
    markdown = (run / "test_metrics.md").read_text()
    assert all(f"| {n} |" in markdown for n in names) and "| mIoU |" in markdown
    assert json.loads((run / "summary.json").read_text())["task"] == "eval"

    with open(run / "worst" / "worst.csv") as f:
        worst = list(csv.DictReader(f))
    assert len(worst) == 3
    ious = [float(w["IoU"]) for w in worst]
    assert ious == sorted(ious)
    # the listed IoU is the image's macro Jaccard over present classes (sklearn as reference)
    predictor = load_predictor(ckpt)
    from litseg.data.datasets.shapes import ShapesDataset

    dataset = ShapesDataset(split="test", length=16, transform=predictor.transform)
    every = []
    for index in range(len(dataset)):
        sample = dataset[index]
        pred = predictor.masks(predictor.logits(sample["image"][None]))[0].ravel()
        truth = sample["mask"].numpy().ravel()
        labels = np.union1d(pred, truth)
        every.append(jaccard_score(truth, pred, labels=labels, average="macro"))
    assert ious == pytest.approx(sorted(every)[:3], abs=1e-6)
    first = Image.open(run / "worst" / worst[0]["file"])
    assert first.size == (2 * (3 * 64 + 2 * 2), 2 * 64)  # image | truth | prediction, x2
    assert [w["image"] for w in worst] == ["", "", ""]  # generated data has no files


def write_folder_split(root: Path, count: int) -> list[str]:
    """``count`` shapes images with index masks under root/test/{images,masks}/."""
    names = []
    for i in range(count):
        image, label = render_sample(np.random.default_rng(100 + i), 64)
        name = f"frame_{i:02d}.png"
        for sub, array in (("images", image), ("masks", label)):
            (root / "test" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / "test" / sub / name)
        names.append(f"test/images/{name}")
    return names


@pytest.mark.slow
def test_worst_images_are_the_ones_the_metrics_saw_and_are_named_by_file(tmp_path: Path) -> None:
    """trainer.limit_test_batches=2 with 2 images a batch: the metrics see the first 4 of 6
    test images, and so do the pixel shares and the worst images, listed by file name."""
    ckpt = train_checkpoint(tmp_path / "train", "loss=ce")
    files = write_folder_split(tmp_path / "data", 6)
    cfg = compose_config(
        "eval",
        [
            f"ckpt_path={ckpt}",
            "data=folder",
            f"data.root={tmp_path / 'data'}",
            "data.num_classes=4",
            "data.class_names=[background,circle,square,triangle]",
            "data.mean=[0.5,0.5,0.5]",
            "data.std=[0.25,0.25,0.25]",
            "data.eval_batch_size=2",
            "data.num_workers=0",
            "trainer.limit_test_batches=2",
            "report.worst_k=8",
            "report.batch_size=3",
        ],
        tmp_path / "eval",
    )
    try:
        result = evaluate(cfg)
    finally:
        GlobalHydra.instance().clear()
    run = Path(result["run_dir"])
    with open(run / "worst" / "worst.csv") as f:
        worst = list(csv.DictReader(f))
    assert sorted(w["image"] for w in worst) == files[:4]
    assert sorted(int(w["index"]) for w in worst) == [0, 1, 2, 3]
    for w in worst:
        assert Path(w["image"]).stem in w["file"] and (run / "worst" / w["file"]).is_file()
    with open(run / "test_metrics.csv") as f:
        pixels = [int(r["value"]) for r in csv.DictReader(f) if r["metric"] == "pixels"]
    assert sum(pixels) == 4 * 64 * 64
