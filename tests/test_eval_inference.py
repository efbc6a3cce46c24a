"""eval.py with predict.py's inference modes and test-time augmentation (``inference=...``).

Without ``inference`` eval feeds each batch to the network as validation does; with it the
logits come from :func:`litseg.inference.infer` (whole or sliding windows, flip TTA), for the
metrics and the worst-image report alike.
"""

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from litseg.evaluate import InferenceNet, inference_options
from litseg.models.unet import UNet
from tests.helpers import TINY, run_cli, train_run


def test_flip_tta_averages_the_flipped_logits() -> None:
    torch.manual_seed(0)
    net = UNet(in_channels=3, num_classes=4, base_width=4, depth=2).eval()
    images = torch.randn(2, 3, 24, 20)  # not a multiple of the stride: padded, cropped back
    cfg = OmegaConf.create({"inference": {"mode": "whole", "stride": None, "tta": "flip"}})
    options = inference_options(cfg, net)
    assert options == {"mode": "whole", "stride": 4, "tta": "flip"}
    wrapped = InferenceNet(net, options)
    with torch.no_grad():
        plain = InferenceNet(net, {"mode": "whole", "stride": 4})(images)
        flipped = [
            InferenceNet(net, {"mode": "whole", "stride": 4})(images.flip(d)).flip(d)
            for d in (-1, -2)
        ]
        expected = (plain + flipped[0] + flipped[1]) / 3
        got = wrapped(images)
    assert got.shape == (2, 4, 24, 20)
    assert torch.allclose(got, expected, atol=1e-6)
    assert not torch.allclose(got, plain, atol=1e-4)  # the flips changed the logits


def test_inference_options() -> None:
    net = UNet(in_channels=3, num_classes=2, base_width=4, depth=3)
    assert inference_options(OmegaConf.create({"data": {}}), net) is None
    slide = OmegaConf.create(
        {"data": {"crop_size": 48}, "inference": {"mode": "slide", "window": None, "tta": None}}
    )
    assert inference_options(slide, net) == {"mode": "slide", "window": 48, "stride": 8}


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("tta") / "run"
    overrides = [*TINY, "trainer.max_epochs=2", "trainer.limit_train_batches=4", "logger=csv"]
    return train_run(run_dir, overrides)


def _eval(run_dir: Path, out: Path, *args: str) -> dict:
    run = run_cli(
        "eval.py",
        f"ckpt_path={run_dir}",
        "data.num_workers=0",
        "report.worst_k=2",
        *args,
        f"hydra.run.dir={out}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())["metrics"]


@pytest.mark.slow
def test_eval_with_flip_tta_and_sliding_windows(shapes_run: Path, tmp_path: Path) -> None:
    plain = _eval(shapes_run, tmp_path / "plain")
    # inference.tta alone implies inference=whole
    flip = _eval(shapes_run, tmp_path / "flip", "inference.tta=flip")
    slide = _eval(
        shapes_run,
        tmp_path / "slide",
        "inference=slide",
        "inference.window=32",
        "inference.tta=hflip",
    )
    for metrics in (plain, flip, slide):
        for key in ("test/mIoU", "test/pixel_acc", "test/mean_class_acc"):
            assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    # other logits: the loss over the same images moves
    assert flip["test/loss"] != pytest.approx(plain["test/loss"], abs=1e-6)
    assert slide["test/loss"] != pytest.approx(flip["test/loss"], abs=1e-6)
    overrides = (tmp_path / "flip" / ".hydra" / "overrides.yaml").read_text()
    assert "inference=whole" in overrides and "inference.tta=flip" in overrides
    assert list((tmp_path / "flip" / "worst").glob("*.png"))
