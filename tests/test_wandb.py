"""logger=wandb with no API key and no network: offline run files inside the run directory;
with a server that does not answer, offline within a few seconds instead of hanging; the
check runs when the logger is built, never while the config is composed or resolved."""

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from litseg.builders import WANDB_AUTO, settle_wandb
from litseg.train import train
from litseg.utils.wandb_mode import CACHE_ENV, server_reachable, wandb_should_be_offline
from tests.helpers import TINY, run_cli


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


@contextmanager
def http_server(status: int = 200) -> Iterator[str]:
    """A real HTTP server on localhost answering every GET with ``status``; yields its URL."""

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def tarpit() -> Iterator[tuple[str, list[socket.socket]]]:
    """A half-open endpoint: accepts every connection and never answers. Yields its URL and
    the connections it accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        while not stop.is_set():
            with suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


@pytest.fixture
def wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """W&B as a user with an API key and no WANDB_MODE sees it; no cached answer."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    return monkeypatch


def test_offline_without_credentials(wandb_env: pytest.MonkeyPatch) -> None:
    wandb_env.delenv("WANDB_API_KEY")
    assert wandb_should_be_offline()
    wandb_env.setenv("WANDB_API_KEY", "x" * 40)
    with http_server() as url:  # a W&B server that answers
        wandb_env.setenv("WANDB_BASE_URL", url)
        assert not wandb_should_be_offline()
    # a key but no server: offline instead of waiting for the network
    wandb_env.delenv(CACHE_ENV)
    assert wandb_should_be_offline()
    wandb_env.setenv("WANDB_MODE", "offline")
    assert wandb_should_be_offline()


def test_any_http_answer_means_reachable() -> None:
    for status in (200, 404, 500):
        with http_server(status) as url:
            assert server_reachable(url, timeout_s=5.0), status


def test_silent_server_means_offline_within_the_budget(
    wandb_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with tarpit() as (url, accepted):
        started = time.monotonic()
        assert not server_reachable(url, timeout_s=1.0)
        assert time.monotonic() - started < 2.5
        assert accepted, "the check never connected"

        wandb_env.setenv("WANDB_BASE_URL", url)
        started = time.monotonic()
        assert wandb_should_be_offline()
        assert time.monotonic() - started < 6.0  # the default budget is 3 s
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and url in warnings[0] and "offline" in warnings[0]
        # the answer is kept for this process and its subprocesses: no second wait, no warning
        connections = len(accepted)
        started = time.monotonic()
        assert wandb_should_be_offline()
        assert time.monotonic() - started < 0.5
        assert len(accepted) == connections
        assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


def test_composing_a_wandb_config_opens_no_connection(
    wandb_env: pytest.MonkeyPatch, make_cfg
) -> None:
    """A key and a silent server: composing and resolving logger=wandb neither connects nor
    waits; building the logger (settle_wandb, its first step) checks once and goes offline."""
    wandb_env.setenv(CACHE_ENV, "")  # restored after the test, whatever the check caches
    with tarpit() as (url, accepted):
        wandb_env.setenv("WANDB_BASE_URL", url)
        started = time.monotonic()
        cfg = make_cfg("logger=wandb", "logger.wandb.log_model=true")
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert time.monotonic() - started < 30.0
        time.sleep(0.3)  # the tarpit accepts every 0.1 s at the latest
        assert not accepted, "composing the config connected to the W&B server"
        assert resolved["logger"]["wandb"]["offline"] == WANDB_AUTO
        settle_wandb(cfg)
        time.sleep(0.3)
        assert len(accepted) == 1
    assert cfg.logger.wandb.offline is True
    assert cfg.logger.wandb.log_model is False


def test_a_bad_offline_value_is_one_error_naming_the_key(make_cfg) -> None:
    from litseg.errors import ConfigError

    cfg = make_cfg("logger=wandb", "logger.wandb.offline=sometimes")
    with pytest.raises(ConfigError, match=r"logger\.wandb\.offline=sometimes"):
        settle_wandb(cfg)


@pytest.mark.slow
def test_train_with_a_silent_wandb_server_starts_offline(
    wandb_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    with tarpit() as (url, accepted):
        wandb_env.setenv("WANDB_BASE_URL", url)
        run = run_cli(
            "train.py",
            *TINY,
            "logger=wandb",
            "train=false",
            "test=false",
            f"hydra.run.dir={run_dir}",
            timeout=240,
        )
        connections = len(accepted)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    warnings = [line for line in out.splitlines() if "gave no HTTP answer" in line]
    assert len(warnings) == 1, out[-3000:]
    assert url in warnings[0] and "logging offline" in warnings[0]
    waited = float(re.search(r"checked for ([\d.]+) s", warnings[0]).group(1))
    assert waited < 10.0
    assert connections == 1, "only the check talks to the server; offline W&B does not"
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(run_dir.rglob("*"))


def test_wandb_offline_run_files_hold_the_metrics(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = make_cfg("logger=wandb", "debug=limit", "trainer.max_epochs=1", "test=false")
    assert cfg.logger.wandb.offline == WANDB_AUTO  # decided when the logger is built
    train(cfg)
    assert cfg.logger.wandb.offline is True
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
