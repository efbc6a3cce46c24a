"""scripts/render_predictions.py: the README's image | truth | prediction pictures, drawn
from a real checkpoint, at sizes that are not a multiple of the model's stride."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import TINY, run_cli, train_run

SIZE = 60  # not a multiple of the tiny U-Net's stride of 8


@pytest.fixture(scope="module")
def odd_size_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("render") / "run"
    overrides = [*TINY, f"data.dataset.image_size={SIZE}", "data.crop_size=56"]
    overrides += ["augment=basic", "trainer.max_epochs=1", "logger=csv", "test=false"]
    train_run(run_dir, overrides)
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("tta", [None, "d4"])
def test_rows_of_image_truth_and_prediction(odd_size_ckpt: Path, tmp_path: Path, tta) -> None:
    out = tmp_path / "pred.png"
    args = ["--ckpt", str(odd_size_ckpt), "--out", str(out), "--indices", "0", "3", "--scale", "1"]
    run = run_cli("scripts/render_predictions.py", *args, *(["--tta", tta] if tta else []))
    assert run.returncode == 0, run.stderr[-3000:]
    picture = np.asarray(Image.open(out).convert("RGB"))
    pad = 2
    assert picture.shape == (2 * SIZE + pad, 3 * SIZE + 2 * pad, 3)
    palette = {(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200)}
    for row in range(2):
        top = row * (SIZE + pad)
        truth = picture[top : top + SIZE, SIZE + pad : 2 * SIZE + pad].reshape(-1, 3)
        pred = picture[top : top + SIZE, 2 * (SIZE + pad) :].reshape(-1, 3)
        assert {tuple(c) for c in truth} <= palette and len({tuple(c) for c in truth}) >= 2
        assert {tuple(c) for c in pred} <= palette


def test_max_width_and_jpeg(odd_size_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.jpg"
    args = ["--ckpt", str(odd_size_ckpt), "--out", str(out), "--n", "2", "--max-width", "91"]
    run = run_cli("scripts/render_predictions.py", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    with Image.open(out) as picture:
        assert picture.format == "JPEG"
        assert picture.size == (91, round(2 * (2 * SIZE + 2) * 91 / (2 * (3 * SIZE + 4))))


def test_a_checkpoint_that_is_not_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.ckpt"
    bad.write_text("not a checkpoint")
    run = run_cli(
        "scripts/render_predictions.py", "--ckpt", str(bad), "--out", str(tmp_path / "o.png")
    )
    assert run.returncode != 0
    assert "x.ckpt" in run.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "o.png").exists()
