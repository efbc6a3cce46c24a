"""ONNX and TorchScript export: any height and width, parity with PyTorch, one ONNX file."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from litseg.export import Exportable, export_model, load_exported, parity
from litseg.inference import whole
from litseg.models.unet import UNet
from tests.helpers import SHARED_DATA, run_cli

CAMVID_IMAGE = SHARED_DATA / "camvid" / "val" / "0016E5_07959.png"


@pytest.fixture(scope="module")
def model() -> Exportable:
    torch.manual_seed(0)
    return Exportable(UNet(3, 4, depth=3, base_width=8), stride=8).eval()


def real_image() -> torch.Tensor:
    """A CamVid frame (360 x 480), normalised as litseg's default pipeline does."""
    image = np.asarray(Image.open(CAMVID_IMAGE).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy((image - 0.5) / 0.25).permute(2, 0, 1)


@pytest.mark.slow
def test_onnx_parity_on_random_and_real_images_of_any_size(
    model: Exportable, tmp_path: Path
) -> None:
    path = export_model(model, tmp_path / "m.onnx", "onnx", torch.randn(1, 3, 64, 64))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [d for d in session.get_inputs()[0].shape[2:]] == ["height", "width"]
    images = [torch.randn(1, 3, 64, 64), torch.randn(2, 3, 45, 77), real_image()]
    rows = parity(model, load_exported(path, "onnx"), images)
    assert [r["shape"] for r in rows] == [[1, 3, 64, 64], [2, 3, 45, 77], [1, 3, 360, 480]]
    assert max(r["max_abs_diff"] for r in rows) <= 1e-4


def test_the_exported_graph_pads_by_reflection_as_whole_image_inference(
    model: Exportable,
) -> None:
    x = torch.randn(2, 3, 45, 61)  # not a multiple of the stride (8)
    with torch.no_grad():
        ours = model(x)
        reflected = model.net(torch.nn.functional.pad(x, (0, 3, 0, 3), mode="reflect"))
        torch.testing.assert_close(ours, reflected[..., :45, :61])
        torch.testing.assert_close(ours, whole(model.net, x, stride=8))


@pytest.mark.slow
def test_onnx_is_one_file_that_works_when_copied_alone(model: Exportable, tmp_path: Path) -> None:
    path = export_model(model, tmp_path / "a" / "model.onnx", "onnx", torch.randn(1, 3, 64, 64))
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]  # no model.onnx.data
    copy = tmp_path / "b" / "model.onnx"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    session = ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() <= 1e-4


def test_torchscript_export_prints_no_tracer_warning(model: Exportable, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(model, tmp_path / "m.pt", "torchscript", torch.randn(1, 3, 64, 64))
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]


def test_torchscript_parity_at_a_size_other_than_the_example(
    model: Exportable, tmp_path: Path
) -> None:
    path = export_model(model, tmp_path / "m.pt", "torchscript", torch.randn(1, 3, 64, 64))
    rows = parity(model, load_exported(path, "torchscript"), [torch.randn(1, 3, 41, 90)])
    assert rows[0]["shape"] == [1, 3, 41, 90]
    assert rows[0]["max_abs_diff"] <= 1e-4


@pytest.mark.slow
def test_export_cli_writes_a_model_that_passes_parity(tmp_path: Path) -> None:
    train = run_cli(
        "train.py",
        "debug=limit",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "loss=ce",
        "test=false",
        "data.splits.train.length=32",
        "data.splits.val.length=16",
        "data.splits.test.length=16",
        "data.num_workers=0",
        "model.base_width=8",
        "model.depth=3",
        f"hydra.run.dir={tmp_path / 'train'}",
    )
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = json.loads((tmp_path / "train" / "summary.json").read_text())["best_checkpoint"]
    out = tmp_path / "export" / "model.onnx"
    run = run_cli(
        "scripts/export.py",
        f"ckpt_path={ckpt}",
        "format=onnx",
        f"output={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "max_abs_diff=" in run.stdout
    meta = json.loads(out.with_name("model.onnx.json").read_text())
    assert meta["class_names"] == ["background", "circle", "square", "triangle"]
    assert meta["mean"] == [0.5, 0.5, 0.5] and meta["stride"] == 8
    checks = meta["parity"]["checks"]
    assert len(checks) == 4  # two random batches and two images of the test split
    assert meta["parity"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": np.zeros((1, 3, 51, 70), np.float32)})[0]
    assert logits.shape == (1, 4, 51, 70)
