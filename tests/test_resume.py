"""Resume: ckpt_path=<file | run dir | last>; a SIGKILLed run resumed ends where an uninterrupted
run ends.

Tolerance: 1e-5 relative. On the CPU with deterministic algorithms, no augmentation and the
random state stored in the checkpoint (litseg.callbacks.RngStateInCheckpoint), the resumed run
replays the same batches with the same weights, so only float noise could separate the two.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from litseg.errors import ConfigError
from litseg.runtime.resume import resolve_ckpt_path
from tests.helpers import TINY, run_cli, start_cli

ARGS = [
    *TINY,
    "augment=none",
    "trainer=cpu",
    "trainer.max_epochs=5",
    "trainer.deterministic=true",
    "callbacks.rich_progress_bar=null",
    "callbacks.early_stopping=null",
    "test=false",
    "task_name=resume_test",
]
COMPARED = ("val/loss", "val/mIoU", "val/dice", "val/pixel_acc", "train/loss_epoch")


def _touch(path: Path, config: dict | None = None) -> Path:
    """A minimal loadable checkpoint (a state_dict and, optionally, a stored config)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, **({"litseg_config": config} if config else {})}, path)
    return path


def test_ckpt_path_resolution(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    old = _touch(logs / "exp" / "runs" / "a" / "checkpoints" / "last.ckpt")
    new = _touch(logs / "exp" / "multiruns" / "m" / "3" / "checkpoints" / "last.ckpt")
    os.utime(old, (1, 1))
    _touch(logs / "other" / "runs" / "z" / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path(None, logs, "exp") is None
    assert resolve_ckpt_path("last", logs, "exp") == str(new)
    # a run never resumes from its own folder
    assert resolve_ckpt_path("last", logs, "exp", run_dir=new.parents[1]) == str(old)
    assert resolve_ckpt_path(str(old.parents[1]), logs, "exp") == str(old)
    assert resolve_ckpt_path(str(old), logs, "exp") == str(old)
    with pytest.raises(ConfigError, match="ckpt_path=last: no resumable last checkpoint"):
        resolve_ckpt_path("last", logs, "missing")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_ckpt_path(str(tmp_path / "nope.ckpt"), logs, "exp")
    with pytest.raises(ConfigError, match="without checkpoints/last.ckpt"):
        resolve_ckpt_path(str(tmp_path), logs, "exp")
    assert resolve_ckpt_path("auto", logs, "missing") is None
    assert resolve_ckpt_path("auto", logs, "exp") == str(new)


def test_last_passes_over_corrupt_and_foreign_checkpoints(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    unet = {"model": {"_target_": "litseg.models.unet.UNet", "base_width": 8}, "data": {}}
    wide = {"model": {"_target_": "litseg.models.unet.UNet", "base_width": 32}, "data": {}}
    good = _touch(logs / "exp" / "runs" / "a" / "checkpoints" / "last.ckpt", unet)
    foreign = _touch(logs / "exp" / "runs" / "b" / "checkpoints" / "last.ckpt", wide)
    corrupt = logs / "exp" / "runs" / "c" / "checkpoints" / "last.ckpt"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(good.read_bytes()[:40])  # a truncated write
    for age, path in enumerate((corrupt, foreign, good)):
        os.utime(path, (1000 - age, 1000 - age))
    assert resolve_ckpt_path("last", logs, "exp", expected=unet) == str(good)
    assert resolve_ckpt_path("auto", logs, "exp", expected=unet) == str(good)
    # nothing fits: last says what it found and why, auto starts fresh
    other = {"model": {"_target_": "litseg.models.smp_models.SMPModel"}, "data": {}}
    good.unlink()
    with pytest.raises(ConfigError, match=r"passed over: .*unreadable"):
        resolve_ckpt_path("last", logs, "exp", expected=other)
    assert resolve_ckpt_path("auto", logs, "exp", expected=other) is None
    with pytest.raises(ConfigError, match=r"another model \(model._target_, model.base_width"):
        corrupt.unlink()
        resolve_ckpt_path("last", logs, "exp", expected=other)


def test_last_passes_over_a_checkpoint_of_another_optimizer(tmp_path: Path) -> None:
    """An SGD run's optimizer state cannot load into AdamW (KeyError 'step' in torch): the
    newest checkpoint of another optimizer is passed over with the reason, not loaded."""
    logs = tmp_path / "logs"
    model = {"_target_": "litseg.models.unet.UNet", "base_width": 8}
    adamw = {"model": model, "data": {}, "optimizer": {"_target_": "torch.optim.AdamW"}}
    sgd = {"model": model, "data": {}, "optimizer": {"_target_": "torch.optim.SGD"}}
    old = _touch(logs / "exp" / "runs" / "a" / "checkpoints" / "last.ckpt", adamw)
    new = _touch(logs / "exp" / "runs" / "b" / "checkpoints" / "last.ckpt", sgd)
    os.utime(old, (1, 1))
    assert resolve_ckpt_path("last", logs, "exp", expected=adamw) == str(old)
    assert resolve_ckpt_path("last", logs, "exp", expected=sgd) == str(new)
    old.unlink()
    with pytest.raises(ConfigError, match=r"another optimizer \(torch.optim.SGD, this run"):
        resolve_ckpt_path("last", logs, "exp", expected=adamw)
    assert resolve_ckpt_path("auto", logs, "exp", expected=adamw) is None


def _metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / "summary.json").read_text())["metrics"]


def _kill_after_first_checkpoint(args: list[str], logs: Path) -> Path:
    """Start a run, SIGKILL it once it has written a last checkpoint; return its run dir."""
    proc = start_cli("train.py", *args, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            found = list(logs.glob("resume_test/runs/*/checkpoints/last.ckpt"))
            if found:
                time.sleep(0.3)  # let the checkpoint write finish; training goes on meanwhile
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    (run_dir,) = logs.glob("resume_test/runs/*")
    assert not (run_dir / "summary.json").exists(), "the run finished before the kill"
    return run_dir


@pytest.mark.slow
def test_killed_run_resumed_with_last_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    full = tmp_path / "full"
    proc = run_cli("train.py", *ARGS, f"hydra.run.dir={full}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    logs = tmp_path / "logs"
    killed = _kill_after_first_checkpoint([*ARGS, f"paths.log_dir={logs}"], logs)
    before = {p.relative_to(killed): p.stat().st_mtime_ns for p in killed.rglob("*") if p.is_file()}
    time.sleep(1.1)  # the resumed run's folder is named after the (next) second

    proc = run_cli("train.py", *ARGS, f"paths.log_dir={logs}", "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = next(p for p in logs.glob("resume_test/runs/*") if p != killed)
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["resumed_from"] == str(killed / "checkpoints" / "last.ckpt")
    assert summary["epochs"] == json.loads((full / "summary.json").read_text())["epochs"] == 5
    for key in COMPARED:
        assert _metrics(resumed)[key] == pytest.approx(_metrics(full)[key], rel=1e-5), key
    # the best checkpoint (possibly from before the kill) is ranked and kept in the new folder
    full_summary = json.loads((full / "summary.json").read_text())
    assert summary["best_score"] == pytest.approx(full_summary["best_score"], rel=1e-5)
    assert Path(summary["best_checkpoint"]).name == Path(full_summary["best_checkpoint"]).name
    assert Path(summary["best_checkpoint"]).parent == resumed / "checkpoints"
    # the interrupted run's folder is left as it was
    after = {p.relative_to(killed): p.stat().st_mtime_ns for p in killed.rglob("*") if p.is_file()}
    assert after == before
