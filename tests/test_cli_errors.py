"""Everyday mistakes through the real command line: each one exits non-zero with exactly one
line on stderr that names the key or file, and no traceback (issue 13).

Also: a run directory is accepted as ``ckpt_path`` by eval.py, predict.py and export (its best
checkpoint, :func:`litseg.runtime.resume.checkpoint_file`), and eval.py adjusts the
checkpoint's data config with ``data.<key>=`` alone (``data.root=`` included).
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from litseg.errors import ConfigError
from litseg.evaluate import merge_training_config
from litseg.runtime.entry import stored_group_overrides
from litseg.runtime.resume import checkpoint_file, resolve_ckpt_path
from tests.helpers import SHARED_DATA, TINY, run_cli, train_run

pytestmark = pytest.mark.slow
MEMBRANE = SHARED_DATA / "isbi2012_membrane"
QUICK = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "logger=csv"]


def one_line(run, *needles: str) -> str:
    """The single stderr line of a failed command, which must contain every needle."""
    assert run.returncode != 0, run.stdout[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes U-Net's run directory (summary.json, best and last checkpoints)."""
    return train_run(tmp_path_factory.mktemp("shapes") / "run", [*TINY, *QUICK])


@pytest.fixture(scope="module")
def membrane_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny membrane U-Net trained on the real slices (a dataset with a data.root)."""
    if not MEMBRANE.is_dir():
        pytest.skip(f"the membrane data is not at {MEMBRANE}")
    overrides = [
        "data=membrane",
        "loss=dice_bce",
        "augment=none",
        "model.base_width=4",
        "model.depth=2",
        "data.num_workers=0",
        "trainer.limit_val_batches=1",
        "test=false",
        *QUICK,
    ]
    return train_run(tmp_path_factory.mktemp("membrane") / "run", overrides)


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a checkpoint\n")
    return path


@pytest.mark.parametrize("script", ["eval.py", "predict.py", "scripts/export.py", "train.py"])
def test_a_text_file_as_checkpoint_is_one_line(
    script: str, text_file: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(images / "a.png")
    extra = {
        "predict.py": [f"input={images}", f"output={tmp_path / 'out'}"],
        "scripts/export.py": [f"output={tmp_path / 'model.onnx'}"],
        "train.py": [*TINY, "debug=fdr"],
    }.get(script, [])
    run = run_cli(script, f"ckpt_path={text_file}", *extra, f"hydra.run.dir={tmp_path / 'run'}")
    assert run.returncode == 2
    one_line(run, f"ckpt_path={text_file}", "litseg: error:")
    if script in ("eval.py", "train.py"):  # the others make no run folder of their own
        assert not (tmp_path / "run").exists()


def test_checkpoint_file_picks_the_best_of_a_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("epoch001.ckpt", "epoch004.ckpt", "last.ckpt"):
        torch.save({"state_dict": {}}, folder / name)
    # several: the one summary.json names, by file name only (a path elsewhere is not used)
    outside = tmp_path / "elsewhere" / "epoch004.ckpt"
    (run / "summary.json").write_text(json.dumps({"best_checkpoint": str(outside)}))
    assert checkpoint_file(run) == folder / "epoch004.ckpt"
    assert checkpoint_file(folder) == folder / "epoch004.ckpt"  # checkpoints/ given itself
    assert checkpoint_file(run, prefer="last") == folder / "last.ckpt"
    assert resolve_ckpt_path(str(run), tmp_path, "x") == str(folder / "last.ckpt")
    (run / "summary.json").write_text(json.dumps({"best_checkpoint": "other.ckpt"}))
    with pytest.raises(ConfigError, match="holds 2 checkpoints and no summary.json naming"):
        checkpoint_file(run)
    (folder / "epoch001.ckpt").unlink()
    assert checkpoint_file(run) == folder / "epoch004.ckpt"  # the only one needs no summary
    (folder / "epoch004.ckpt").unlink()
    assert checkpoint_file(run) == folder / "last.ckpt"  # no best: the last
    (folder / "last.ckpt").unlink()
    with pytest.raises(ConfigError, match=r"ckpt_path=.* is a folder without checkpoints"):
        checkpoint_file(run)
    with pytest.raises(ConfigError, match="no such checkpoint file or run directory"):
        checkpoint_file(tmp_path / "missing")


def test_run_directory_as_ckpt_path(shapes_run: Path, tmp_path: Path) -> None:
    summary = json.loads((shapes_run / "summary.json").read_text())
    best = Path(summary["best_checkpoint"])
    run = run_cli(
        "eval.py",
        f"ckpt_path={shapes_run}",
        "data.num_workers=0",
        "report.worst_k=0",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert result["checkpoint"] == str(best)
    assert result["metrics"]["test/mIoU"] == pytest.approx(summary["metrics"]["test/mIoU"])

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(shapes_run / "confusion_matrix.png", images / "picture.png")
    run = run_cli(
        "predict.py", f"ckpt_path={shapes_run}", f"input={images}", f"output={tmp_path / 'out'}"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "out" / "picture.png").is_file()
    assert f"using {best}" in run.stdout + run.stderr


def test_eval_adjusts_the_stored_data_config(membrane_run: Path, tmp_path: Path) -> None:
    # data.root alone (no data=membrane): the stored paths move to the new root
    moved = tmp_path / "membrane_copy"
    moved.mkdir()
    for name in ("image", "label"):
        os.symlink(MEMBRANE / name, moved / name)
    run = run_cli(
        "eval.py",
        f"ckpt_path={membrane_run}",
        "split=val",
        f"data.root={moved}",
        "data.num_workers=0",
        "report.worst_k=1",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    worst = (tmp_path / "eval" / "worst" / "worst.csv").read_text()
    assert "image/" in worst  # the report names the file relative to the new root
    config = (tmp_path / "eval" / ".hydra" / "config.yaml").read_text()
    assert f"data.root={moved}" in (tmp_path / "eval" / ".hydra" / "overrides.yaml").read_text()
    assert str(moved) in config

    # a root that does not exist: one line naming it
    run = run_cli(
        "eval.py",
        f"ckpt_path={membrane_run}",
        "split=val",
        f"data.root={tmp_path / 'nowhere'}",
        f"hydra.run.dir={tmp_path / 'eval2'}",
    )
    one_line(run, f"{tmp_path / 'nowhere'}")

    # no test split: the line says to evaluate split=val
    run = run_cli("eval.py", f"ckpt_path={membrane_run}", f"hydra.run.dir={tmp_path / 'e3'}")
    one_line(run, "split=test", "no test split", "split=val")
    assert not (tmp_path / "e3").exists()

    # a key the stored data config lacks
    run = run_cli(
        "eval.py", f"ckpt_path={membrane_run}", "data.rooot=/x", f"hydra.run.dir={tmp_path / 'e4'}"
    )
    one_line(run, "data.rooot", "no such key", "root")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["data=camvid"], ["data.num_classes=11", "num_classes=4"]),
        (["data.num_classes=3"], ["data.num_classes=3", "num_classes=4"]),
        (["model.num_classes=3"], ["weights do not fit", "model.num_classes=3"]),
        (["data.batch_size=-4"], ["data.batch_size=-4"]),
        (["trainer.max_epoch=1"], ["trainer.max_epoch", "trainer.max_epochs"]),
        (["model=unett"], ["model/unett", "model=unet"]),
        (["data.rooot=/x"], ["data.rooot", "no such key"]),
        (["split=train"], ["split=train", "test or val"]),
    ],
)
def test_eval_mistakes_are_one_line(
    shapes_run: Path, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    run = run_cli("eval.py", f"ckpt_path={shapes_run}", *args, f"hydra.run.dir={tmp_path / 'eval'}")
    assert run.returncode == 2
    one_line(run, *needles)
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["trainer.max_epoch=1"], ["trainer.max_epoch", "did you mean trainer.max_epochs"]),
        (["data=camvdi"], ["data/camvdi", "did you mean data=camvid"]),
        (["data.batch_size"], ["data.batch_size"]),
        (["data=folder"], ["data.root", "missing"]),
        (["data=camvid", "data.root=/no/such/folder"], ["data.root=/no/such/folder"]),
        (["data=membrane", "data.num_classes=2"], ["data.num_classes=2"]),
    ],
)
def test_train_mistakes_are_one_line(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    run = run_cli("train.py", *args, "debug=fdr", f"hydra.run.dir={tmp_path / 'run'}")
    assert run.returncode == 2
    one_line(run, *needles)
    # nothing ran: no run folder is left (not even one holding a failed summary.json)
    assert not (tmp_path / "run").exists()


def test_folder_of_images_without_masks_is_one_line(tmp_path: Path) -> None:
    if not MEMBRANE.is_dir():
        pytest.skip(f"the membrane data is not at {MEMBRANE}")
    (tmp_path / "data" / "images").mkdir(parents=True)
    shutil.copy(MEMBRANE / "image" / "0.png", tmp_path / "data" / "images" / "0.png")
    run = run_cli(
        "train.py",
        "data=folder",
        f"data.root={tmp_path / 'data'}",
        "data.task=binary",
        "loss=dice_bce",
        "debug=fdr",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    one_line(run, f"data.root={tmp_path / 'data'}", "masks")


def test_stored_group_overrides() -> None:
    groups = ("data", "model")
    assert stored_group_overrides(["data.root=/x", "model.depth=3", "seed=1"], groups) == [
        "++data.root=/x",
        "++model.depth=3",
        "seed=1",
    ]
    # a group named on the command line keeps Hydra's own key check
    assert stored_group_overrides(["data=camvid", "data.root=/x"], groups) == [
        "data=camvid",
        "data.root=/x",
    ]
    assert stored_group_overrides(["+data.x=1"], groups) == ["+data.x=1"]
    implied = stored_group_overrides(["inference.tta=flip"], groups, {"inference": "whole"})
    assert implied == ["inference=whole", "inference.tta=flip"]
    named = ["inference=slide", "inference.tta=flip"]
    assert stored_group_overrides(named, groups, {"inference": "whole"}) == named


def test_a_changed_data_key_reaches_the_nested_keys_resolved_from_it() -> None:
    # a checkpoint stores its config resolved: dataset.fold was ${data.fold}, saved as 4
    stored = {
        "root": "/old",
        "fold": 4,
        "num_folds": 5,
        "dataset": {"_target_": "x.Membrane", "root": "/old", "fold": 4, "num_folds": 5},
        "splits": {"test": {"fold": 3}},
    }
    cfg = OmegaConf.create({"data": {}})
    merged = merge_training_config(cfg, {"data": stored}, ["data.fold=0"])
    assert merged.data.fold == 0
    assert merged.data.dataset.fold == 0
    assert merged.data.splits.test.fold == 3  # it held another value: not from data.fold
    assert merged.data.dataset.num_folds == 5
    untouched = merge_training_config(cfg, {"data": stored}, ["+data.batch_size=2"])
    assert untouched.data.dataset.fold == 4
