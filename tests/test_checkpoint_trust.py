"""A checkpoint's stored config is data: crafted checkpoints build nothing and touch no file.

Each crafted file is a real checkpoint of a tiny trained U-Net whose stored litseg_config has
one node replaced by a call that would write a file (``builtins.open(..., "w")`` truncates,
``shutil.copyfile`` writes). predict, export and eval must refuse it with one line naming the
key and the target, before anything is built; a resumed run must not copy top-k files that a
checkpoint lists outside its own folder.
"""

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from litseg.errors import ConfigError
from litseg.evaluate import evaluate
from litseg.predict import load_predictor
from litseg.stored_config import shipped_targets, target_allowed
from litseg.train import train
from tests.helpers import TINY, compose_config, run_cli

QUICK = [*TINY, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("trust")
    cfg = compose_config("train", QUICK, tmp / "run")
    try:
        result = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    return Path(result["best_checkpoint"])


def craft(source: Path, target: Path, change: Any) -> Path:
    """A copy of the checkpoint at ``source`` whose stored config ``change`` has edited."""
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    change(checkpoint["litseg_config"])
    torch.save(checkpoint, target)
    return target


def _truncate(victim: Path) -> dict[str, Any]:
    return {"_target_": "builtins.open", "file": str(victim), "mode": "w"}


def _copy(victim: Path, written: Path) -> dict[str, Any]:
    return {"_target_": "shutil.copyfile", "src": str(victim), "dst": str(written)}


def edits(victim: Path, written: Path) -> dict[str, Any]:
    """One crafted edit per group a command rebuilds (the key the error must name)."""

    def nested_model(c: dict) -> None:
        c["model"]["norm"] = _copy(victim, written)

    def put(group: str, value: dict) -> Any:
        return lambda c: c.__setitem__(group, value)

    def transform(c: dict) -> None:
        c["augment"]["eval"]["transforms"][0] = _copy(victim, written)

    def dataset(c: dict) -> None:
        c["data"]["dataset"] = _copy(victim, written)

    return {
        "model._target_": put("model", _truncate(victim)),
        "model.norm._target_": nested_model,
        "augment.eval.transforms[0]._target_": transform,
        "data.dataset._target_": dataset,
        "loss._target_": put("loss", _copy(victim, written)),
        "module._target_": put("module", _copy(victim, written)),
    }


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "precious.txt"
    path.write_text("keep me")
    return path


@pytest.mark.parametrize("key", list(edits(Path("v"), Path("w"))))
def test_crafted_checkpoint_builds_nothing_in_predict_export_and_eval(
    trained: Path, tmp_path: Path, victim: Path, key: str
) -> None:
    written = tmp_path / "evil.pth"
    crafted = craft(trained, tmp_path / "crafted.ckpt", edits(victim, written)[key])
    # predict.py and scripts/export.py rebuild through load_predictor
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
        load_predictor(crafted)
    cfg = compose_config("eval", [*TINY, f"ckpt_path={crafted}"], tmp_path / "eval")
    try:
        with pytest.raises(ConfigError, match="not on litseg's allowlist"):
            evaluate(cfg)
    finally:
        GlobalHydra.instance().clear()
    assert victim.read_text() == "keep me"
    assert not written.exists()


@pytest.mark.slow
def test_crafted_checkpoint_is_one_line_and_exit_2_in_every_command(
    trained: Path, tmp_path: Path, victim: Path
) -> None:
    written = tmp_path / "evil.pth"
    crafted = craft(
        trained, tmp_path / "crafted.ckpt", edits(victim, written)["model.norm._target_"]
    )
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(images / "a.png")
    commands = {
        "predict.py": [f"input={images}", f"output={tmp_path / 'masks'}"],
        "eval.py": [*TINY],
        "scripts/export.py": [f"output={tmp_path / 'model.onnx'}"],
    }
    for script, args in commands.items():
        proc = run_cli(script, f"ckpt_path={crafted}", *args, f"hydra.run.dir={tmp_path / script}")
        assert proc.returncode == 2, (script, proc.stderr[-2000:])
        errors = [line for line in proc.stderr.splitlines() if line.startswith("litseg: error:")]
        assert len(errors) == 1 and "'model.norm._target_'" in errors[0], (script, proc.stderr)
        assert "shutil.copyfile" in errors[0]
        assert "Traceback" not in proc.stderr
    assert victim.read_text() == "keep me"
    assert not written.exists()
    assert not (tmp_path / "masks").exists() and not (tmp_path / "model.onnx").exists()


def test_stored_model_fetches_no_pretrained_weights(trained: Path, tmp_path: Path) -> None:
    def ask_for_download(c: dict) -> None:
        c["model"]["pretrained"] = True

    # the U-Net has no pretrained option: build a checkpoint whose model would download if
    # the flag were honoured, via the loader's own sanitising
    from litseg.checkpoint import load_checkpoint

    crafted = craft(trained, tmp_path / "c.ckpt", ask_for_download)
    stored = load_checkpoint(crafted)["litseg_config"]
    assert stored["model"]["pretrained"] is False


def test_every_shipped_target_is_allowed_and_code_runners_are_not() -> None:
    assert "litseg.models.unet.UNet" in shipped_targets()
    assert all(target_allowed(t) for t in shipped_targets())
    for allowed in (
        "albumentations.Affine",
        "torch.optim.RMSprop",
        "torch.optim.lr_scheduler.OneCycleLR",
    ):
        assert target_allowed(allowed), allowed
    for refused in (
        "builtins.open",
        "builtins.exec",
        "shutil.copyfile",
        "pathlib.Path.write_text",
        "os.system",
        "albumentations.Lambda",
        "albumentations.save",
        "torch.save",
        "litseg.utils.io.atomic_write_text",
        "torch.optim.Optimizer.__init__",
    ):
        assert not target_allowed(refused), refused
    assert target_allowed("mypkg.MyModel", extra=["mypkg.MyModel"])


def test_resume_does_not_copy_top_k_files_from_outside_the_checkpoint_folder(
    trained: Path, tmp_path: Path, victim: Path
) -> None:
    stolen = tmp_path / "secret.ckpt"
    stolen.write_bytes(b"not yours")

    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    for state in checkpoint["callbacks"].values():
        if "best_k_models" in state:
            state["best_k_models"] = {str(stolen): state["best_model_score"]}
            state["best_model_path"] = str(stolen)
            state["dirpath"] = str(tmp_path / "elsewhere")
    crafted_dir = tmp_path / "crafted" / "checkpoints"
    crafted_dir.mkdir(parents=True)
    crafted = crafted_dir / "last.ckpt"
    torch.save(copy.deepcopy(checkpoint), crafted)

    out = tmp_path / "resumed"
    cfg = compose_config("train", [*QUICK, "trainer.max_epochs=2", f"ckpt_path={crafted}"], out)
    try:
        result = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    copied = list((out / "checkpoints").glob("secret*"))
    assert copied == [], copied
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"
    assert Path(result["best_checkpoint"]).parent == out / "checkpoints"
