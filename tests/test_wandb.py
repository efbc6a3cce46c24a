"""logger=wandb with no API key and no network: offline run files inside the run directory."""

import socket
import time
from pathlib import Path

import pytest

from litseg.train import train
from litseg.utils.wandb_mode import wandb_should_be_offline


def _run_file_with(run: Path, keys: tuple[bytes, ...], wait_s: float = 60.0) -> bytes:
    """The offline .wandb file's bytes once they hold ``keys``: on a loaded machine the W&B
    service may still be writing when ``wandb.finish()`` returns."""
    deadline = time.monotonic() + wait_s
    while True:
        files = list(run.glob("run-*.wandb"))
        data = files[0].read_bytes() if files else b""
        if all(key in data for key in keys) or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def test_offline_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert wandb_should_be_offline()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with socket.create_server(("127.0.0.1", 0)) as server:  # a reachable "W&B server"
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert not wandb_should_be_offline()
    # a key but no server: offline instead of waiting for the network
    assert wandb_should_be_offline()
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
    keys = (b"train/loss_epoch", b"val/mIoU", b"val/IoU_circle", b"val/pixel_acc")
    data = _run_file_with(runs[0], keys)
    assert data, list(runs[0].iterdir())
    for key in keys:
        assert key in data, key


def test_prediction_masks_every_epoch_and_sweep_group(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg(
        "logger=wandb",
        "debug=limit",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=1",
        "test=false",
        "callbacks.wandb_images.every_n_epochs=1",
        "callbacks.wandb_images.max_images=2",
        "logger.wandb.log_model=true",  # offline: ignored with a warning, not an error
        "hydra.mode=MULTIRUN",
        "hydra.sweep.dir=/somewhere/multiruns/2026-01-02_03-04-05",
    )
    train(cfg)
    import wandb

    wandb.finish()
    assert cfg.logger.wandb.group == "debug-2026-01-02_03-04-05"
    assert cfg.logger.wandb.log_model is False
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    keys = (b"val/predictions", b"debug-2026-01-02_03-04-05", b"truth", b"prediction")
    data = _run_file_with(run, (*keys, b"circle", b"triangle"))
    for key in keys:
        assert key in data, key
    # 2 epochs x 2 images, each with a truth and a prediction mask layer (W&B stores a mask
    # once per content, so equal masks share a file)
    images = list((run / "files" / "media" / "images" / "val").glob("predictions_*.png"))
    masks = list((run / "files" / "media" / "images" / "mask").rglob("*.mask.png"))
    assert len(images) == 4, images
    assert len(masks) >= 2, masks
    for name in (b"circle", b"triangle"):  # class labels of the mask layers
        assert name in data, name
