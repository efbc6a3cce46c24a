"""train() with a real Lightning Trainer: every model with every loss that fits its task."""

import json
import math
from pathlib import Path

import pytest
import torch

from litseg.errors import ConfigError
from litseg.metrics import build_metrics
from litseg.train import train

MULTICLASS_LOSSES = ["dice", "ce", "dice_ce"]
BINARY_LOSSES = ["dice", "bce", "dice_bce"]
COMBOS = [(m, "multiclass", loss) for m in ("unet", "fcn") for loss in MULTICLASS_LOSSES] + [
    (m, "binary", loss) for m in ("unet", "fcn") for loss in BINARY_LOSSES
]


@pytest.mark.parametrize(
    ("model", "task", "loss"), COMBOS, ids=[f"{m}-{t}-{lo}" for m, t, lo in COMBOS]
)
def test_fast_dev_run(make_cfg, model: str, task: str, loss: str) -> None:
    cfg = make_cfg(
        f"model={model}",
        f"loss={loss}",
        f"data.task={task}",
        "trainer.fast_dev_run=true",
        "data.batch_size=2",
        "data.eval_batch_size=2",
    )
    result = train(cfg)
    assert math.isfinite(result["metrics"]["train/loss_step"])
    assert 0.0 <= result["metrics"]["val/mIoU"] <= 1.0


def test_loss_that_does_not_fit_the_task_fails_before_training(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("loss=bce")  # multiclass data
    with pytest.raises(ConfigError, match=r"loss=bce does not fit data.task=multiclass"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


def test_run_dir_holds_config_checkpoints_metrics_and_summary(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("debug=limit", "trainer.max_epochs=2", "trainer.limit_train_batches=2")
    result = train(cfg)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("epoch") for n in ckpts)
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in (
        "train/loss_epoch",
        "val/loss",
        "val/mIoU",
        "val/dice",
        "val/pixel_acc",
        "val/IoU_circle",
        "test/mIoU",
        "test/IoU_triangle",
    ):
        assert name in header, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metrics"]["test/mIoU"] == pytest.approx(result["metrics"]["test/mIoU"])
    assert summary["best_checkpoint"] == result["best_checkpoint"]
    assert {"torch", "lightning", "litseg"} <= set(summary["versions"])
    assert "git_commit" in summary and summary["duration_s"] > 0
    # the checkpoint loads with weights_only and carries the training config
    ckpt = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=True)
    assert ckpt["litseg_config"]["model"]["_target_"] == "litseg.models.unet.UNet"


def test_overfitting_one_batch_drives_loss_down_and_miou_up(make_cfg) -> None:
    cfg = make_cfg(
        "debug=overfit",
        "trainer.max_epochs=60",
        "trainer.check_val_every_n_epoch=60",
        "logger=none",
        "callbacks=none",
        "data.batch_size=4",
        "data.splits.train.length=4",
        "scheduler=none",
        "optimizer.lr=0.01",
        "model.base_width=16",
    )
    result = train(cfg)
    first_loss = result["objects"]["trainer"].logged_metrics  # last epoch's values
    assert first_loss["train/loss_epoch"] < 0.3
    module, dm = result["objects"]["module"], result["objects"]["datamodule"]
    batch = next(iter(dm.train_dataloader()))  # the one batch of four images
    module.eval()
    with torch.no_grad():
        pred = module(batch["image"]).argmax(1)
    metrics = build_metrics("multiclass", 4, None)
    metrics.update(pred, batch["mask"])
    assert metrics.compute()["IoU"].nanmean() > 0.9
