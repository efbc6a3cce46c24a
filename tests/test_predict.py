"""predict.py on a real (briefly trained) checkpoint: masks at each input's own size."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from litseg.data.datasets.shapes import ShapesDataset, render_sample
from litseg.errors import ConfigError
from litseg.predict import load_predictor, predict, read_image, save_png
from litseg.train import train
from tests.helpers import TINY, compose_config, run_cli

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


# --- predict never destroys or drops an output (issue 11, item 8) ----------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("layout", ["output_is_input", "mask_lands_on_an_input"])
def test_predict_refuses_to_overwrite_an_input(
    multiclass_ckpt: Path, tmp_path: Path, layout: str
) -> None:
    if layout == "output_is_input":
        source = tmp_path / "in"
        write_inputs(source)
        output, victim = source, source / "a.png"
    else:  # input=top/in, output=top: the mask of in/in/a.png would be top/in/a.png, an input
        top = tmp_path / "top"
        source = top / "in"
        source.mkdir(parents=True)
        Image.fromarray(render_sample(np.random.default_rng(0), 64)[0]).save(source / "a.png")
        (source / "in").mkdir()
        Image.fromarray(render_sample(np.random.default_rng(1), 64)[0]).save(source / "in/a.png")
        output, victim = top, source / "a.png"
    before = snapshot(tmp_path)
    cfg = predict_cfg(
        tmp_path, f"ckpt_path={multiclass_ckpt}", f"input={source}", f"output={output}"
    )
    GlobalHydra.instance().clear()
    with pytest.raises(ConfigError) as err:
        predict(cfg)
    message = str(err.value)
    assert "\n" not in message and f"output={output}" in message
    if layout == "output_is_input":
        assert f"input={source}" in message
    else:
        assert str(victim) in message
    assert snapshot(tmp_path) == before  # inputs byte-identical, nothing written


def test_inputs_sharing_a_stem_get_one_mask_each(
    multiclass_ckpt: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sizes = {"scan.png": (40, 64), "scan.jpg": (64, 50), "scan.tif": (30, 70)}
    (tmp_path / "in").mkdir()
    for i, (name, (h, w)) in enumerate(sizes.items()):
        image, _ = render_sample(np.random.default_rng(i), 70)
        Image.fromarray(image[:h, :w]).save(tmp_path / "in" / name)
    out = tmp_path / "out"
    cfg = predict_cfg(
        tmp_path, f"ckpt_path={multiclass_ckpt}", f"input={tmp_path / 'in'}", f"output={out}"
    )
    GlobalHydra.instance().clear()
    with caplog.at_level(logging.INFO, logger="litseg"):
        result = predict(cfg)
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert names == ["scan.jpg.png", "scan.png.png", "scan.tif.png"]
    assert sorted(Path(p).name for p in result["masks"]) == names
    for name, (h, w) in sizes.items():  # each mask is its own input's, at that input's size
        assert Image.open(out / f"{name}.png").size == (w, h)
        assert Image.open(out / "overlays" / f"{name}.png").size == (w, h)
    assert f"Wrote 3 masks for 3 images to {out}" in caplog.text


def test_output_inside_the_input_is_not_scanned(
    multiclass_ckpt: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "in"
    write_inputs(source)
    out = source / "masks"
    for run in range(2):
        cfg = predict_cfg(
            tmp_path, f"ckpt_path={multiclass_ckpt}", f"input={source}", f"output={out}"
        )
        GlobalHydra.instance().clear()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="litseg"):
            result = predict(cfg)
        assert result["images"] == 3, f"run {run}"
        assert f"output={out} lies inside input={source}" in caplog.text
    masks = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert masks == [
        "a.png",
        "b.png",
        "overlays/a.png",
        "overlays/b.png",
        "overlays/sub/c.png",
        "sub/c.png",
    ]


def write_with_a_corrupt_image(folder: Path) -> Path:
    """write_inputs plus bad.png (random bytes), read after a.png and b.png, before sub/c.jpg."""
    write_inputs(folder)
    bad = folder / "bad.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    return bad


def test_on_error_skip_writes_every_good_image_and_lists_the_bad_one(
    multiclass_ckpt: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = write_with_a_corrupt_image(tmp_path / "in")
    out = tmp_path / "out"
    cfg = predict_cfg(
        tmp_path,
        f"ckpt_path={multiclass_ckpt}",
        f"input={tmp_path / 'in'}",
        f"output={out}",
        "on_error=skip",
    )
    GlobalHydra.instance().clear()
    with caplog.at_level(logging.INFO, logger="litseg"):
        result = predict(cfg)
    assert result["skipped"] == [str(bad)]
    assert result["images"] == 3
    for name in ("a.png", "b.png", "sub/c.png"):
        assert (out / name).is_file() and (out / "overlays" / name).is_file()
    assert not (out / "bad.png").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(bad) in warnings[0] and "on_error=skip" in warnings[0]
    assert f"Wrote 3 masks for 3 images to {out}" in caplog.text


def test_invalid_on_error_is_refused(multiclass_ckpt: Path, tmp_path: Path) -> None:
    write_inputs(tmp_path / "in")
    cfg = predict_cfg(
        tmp_path,
        f"ckpt_path={multiclass_ckpt}",
        f"input={tmp_path / 'in'}",
        f"output={tmp_path / 'out'}",
        "on_error=ignore",
    )
    GlobalHydra.instance().clear()
    with pytest.raises(ConfigError, match="on_error=ignore"):
        predict(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_on_error_stop_names_the_file_and_keeps_the_masks_before_it(
    multiclass_ckpt: Path, tmp_path: Path
) -> None:
    bad = write_with_a_corrupt_image(tmp_path / "in")
    out = tmp_path / "out"
    run = run_cli(
        "predict.py",  # on_error=stop is the default
        f"ckpt_path={multiclass_ckpt}",
        f"input={tmp_path / 'in'}",
        f"output={out}",
        "batch_size=4",  # a.png and b.png wait in the batch when bad.png is read
        "progress=false",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 2, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and str(bad) in errors[0], run.stderr[-3000:]
    assert errors[0].startswith("litseg: error: ")
    for name in ("a.png", "b.png"):  # predicted before bad.png: written, and kept
        assert Image.open(out / name).size == Image.open(tmp_path / "in" / name).size
        assert (out / "overlays" / name).is_file()
    assert not (out / "sub").exists()  # after bad.png: not predicted
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    # Pillow opens (truncates) the target before encoding: a plain save that fails midway
    # leaves a broken PNG under the mask's name. save_png writes beside it and renames.
    target = tmp_path / "a.png"
    Image.new("L", (8, 8), 7).save(target)
    before = target.read_bytes()
    with pytest.raises(OSError):
        save_png(Image.new("CMYK", (8, 8)), target)  # PNG cannot hold CMYK
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary left
    save_png(Image.new("L", (8, 8), 9), target)
    assert np.asarray(Image.open(target)).max() == 9
