"""predict.py on a real (briefly trained) checkpoint: masks at each input's own size."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, compose_config, run_cli
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from litseg.data.datasets.shapes import ShapesDataset, render_sample
from litseg.predict import load_predictor, predict, read_image
from litseg.train import train

QUICK = [
    *TINY,
    "debug=limit",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "logger=csv",
    "test=false",
]


def train_checkpoint(tmp: Path, *overrides: str) -> Path:
    """A checkpoint of a tiny U-Net trained for two steps, written by the real train()."""
    cfg = compose_config("train", [*QUICK, *overrides], tmp)
    try:
        result = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    return Path(result["best_checkpoint"])


@pytest.fixture(scope="module")
def multiclass_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_checkpoint(tmp_path_factory.mktemp("train_mc"), "loss=ce")


def write_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    """Shapes images of a trained size (64), of unseen sizes, and in a subfolder."""
    sizes = {"a.png": (64, 64), "b.png": (100, 77), "sub/c.jpg": (37, 130)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        image, _ = render_sample(np.random.default_rng(i), max(h, w))
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:h, :w]).save(folder / name)
    return sizes


def predict_cfg(tmp: Path, *overrides: str):
    return compose_config("predict", ["progress=false", *overrides], tmp)


def test_images_are_read_exactly_as_in_training(multiclass_ckpt: Path, tmp_path: Path) -> None:
    predictor = load_predictor(multiclass_ckpt)
    dataset = ShapesDataset(split="val", length=2, transform=predictor.transform)
    image, _ = dataset.raw(1)
    Image.fromarray(image).save(tmp_path / "x.png")
    prepared = predictor.prepare(read_image(tmp_path / "x.png", predictor.in_channels))
    torch.testing.assert_close(prepared, dataset[1]["image"], rtol=0, atol=0)


def test_predict_writes_one_mask_per_input_at_its_size(
    multiclass_ckpt: Path, tmp_path: Path
) -> None:
    sizes = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    cfg = predict_cfg(
        tmp_path, f"ckpt_path={multiclass_ckpt}", f"input={tmp_path / 'in'}", f"output={out}"
    )
    result = predict(cfg)
    GlobalHydra.instance().clear()
    assert result["images"] == 3
    predictor = load_predictor(multiclass_ckpt)
    for name, (h, w) in sizes.items():
        mask = Image.open((out / name).with_suffix(".png"))
        assert mask.mode == "P" and mask.size == (w, h)
        values = np.asarray(mask)
        assert values.max() < 4
        assert mask.getpalette()[3:6] == list(predictor.palette[1])
        assert Image.open((out / "overlays" / name).with_suffix(".png")).size == (w, h)
        # the saved mask is the model's argmax on the image as training prepared it
        image = predictor.prepare(read_image(tmp_path / "in" / name, 3))
        logits = predictor.logits(image[None])
        np.testing.assert_array_equal(values, logits.argmax(1)[0].numpy())


def test_slide_and_flip_tta_keep_the_input_size(multiclass_ckpt: Path, tmp_path: Path) -> None:
    sizes = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    cfg = predict_cfg(
        tmp_path,
        f"ckpt_path={multiclass_ckpt}",
        f"input={tmp_path / 'in' / 'b.png'}",
        f"output={out}",
        "inference=slide",
        "inference.window=48",
        "inference.tta=flip",
        "overlay=false",
    )
    predict(cfg)
    GlobalHydra.instance().clear()
    h, w = sizes["b.png"]
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]
    assert Image.open(out / "b.png").size == (w, h)


@pytest.mark.slow
def test_binary_checkpoint_writes_0_255_masks_with_the_threshold(tmp_path: Path) -> None:
    ckpt = train_checkpoint(tmp_path / "train", "data.task=binary", "loss=bce")
    write_inputs(tmp_path / "in")
    for threshold in (0.5, 1.0):
        out = tmp_path / f"out{threshold}"
        cfg = predict_cfg(
            tmp_path,
            f"ckpt_path={ckpt}",
            f"input={tmp_path / 'in'}",
            f"output={out}",
            f"threshold={threshold}",
        )
        predict(cfg)
        GlobalHydra.instance().clear()
        mask = np.asarray(Image.open(out / "b.png"))
        assert mask.shape == (100, 77) and set(np.unique(mask)) <= {0, 255}
        if threshold == 1.0:  # no probability exceeds 1
            assert mask.max() == 0


@pytest.mark.slow
def test_predict_cli(multiclass_ckpt: Path, tmp_path: Path) -> None:
    sizes = write_inputs(tmp_path / "in")
    run = run_cli(
        "predict.py",
        f"ckpt_path={multiclass_ckpt}",
        f"input={tmp_path / 'in'}",
        f"output={tmp_path / 'out'}",
        "batch_size=2",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    masks = sorted(p for p in (tmp_path / "out").rglob("*.png") if "overlays" not in p.parts)
    assert len(masks) == len(sizes)
    assert "predict: 100%" in run.stderr  # the progress bar


@pytest.mark.slow
def test_predict_names_a_missing_input(multiclass_ckpt: Path, tmp_path: Path) -> None:
    run = run_cli(
        "predict.py",
        f"ckpt_path={multiclass_ckpt}",
        f"input={tmp_path / 'nope'}",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 2
    assert f"input={tmp_path / 'nope'}: no such file or folder" in run.stderr
