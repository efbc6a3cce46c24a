"""logger=wandb with no API key and no network: offline run files inside the run directory."""

from pathlib import Path

import pytest

from litseg.train import train
from litseg.utils.wandb_mode import wandb_should_be_offline


def test_offline_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert wandb_should_be_offline()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not wandb_should_be_offline()
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_should_be_offline()


def test_wandb_offline_run_files_hold_the_metrics(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = make_cfg("logger=wandb", "debug=limit", "trainer.max_epochs=1", "test=false")
    assert cfg.logger.wandb.offline is True
    train(cfg)
    import wandb

    wandb.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((tmp_path / "wandb").iterdir())
    files = list(runs[0].glob("run-*.wandb"))
    assert files, list(runs[0].iterdir())
    data = files[0].read_bytes()
    for key in (b"train/loss_epoch", b"val/mIoU", b"val/IoU_circle", b"val/pixel_acc"):
        assert key in data, key
