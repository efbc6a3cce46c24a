"""Runs that stop early lose nothing: last.ckpt is the last state, a diverging loss stops the
run with its finite checkpoints, a stop signal checkpoints the current step and a resume from
it finishes the run with the whole history (an epoch-boundary resume replays exactly:
tests/test_resume.py)."""

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from litseg.callbacks import ResumableModelCheckpoint
from litseg.errors import ConfigError
from litseg.train import train
from tests.helpers import TINY, compose_config, run_cli, start_cli

ARGS = [
    *TINY,
    "data.splits.train.length=64",
    "augment=none",
    "trainer=cpu",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "callbacks.rich_progress_bar=null",
    "callbacks.early_stopping=null",
    "test=false",
    "task_name=stops",
]


def strict_json(path: Path) -> dict:
    """A summary parsed as strict JSON (NaN and Infinity refused)."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{path} holds {token}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def finite_weights(path: Path) -> bool:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_last_checkpoint_is_the_last_epoch_after_a_plateau(tmp_path: Path) -> None:
    # lr 1e-30 leaves the weights as they are: val/mIoU never improves after epoch 0
    cfg = compose_config("train", [*ARGS, "optimizer.lr=1e-30"], tmp_path)
    try:
        result = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 3 and last["global_step"] == result["global_step"] == 32
    best = torch.load(result["best_checkpoint"], weights_only=True)
    assert best["epoch"] == 0


@pytest.mark.slow
def test_a_diverging_run_stops_with_its_finite_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_cli("train.py", *ARGS, "optimizer.lr=1e12", f"hydra.run.dir={run}")
    assert proc.returncode == 3, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("litseg:")]
    assert len(lines) == 1 and "litseg: diverged: training diverged" in lines[0], proc.stderr
    assert "at step" in lines[0] and "Traceback" not in proc.stderr
    summary = strict_json(run / "summary.json")
    assert summary["status"] == "diverged"
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        assert finite_weights(ckpt), ckpt


def _signal_mid_run(args: list[str], run: Path, signum: int) -> subprocess.CompletedProcess:
    """Start a run, send ``signum`` once its first epoch's last.ckpt exists, wait for it."""
    proc = start_cli("train.py", *args, f"hydra.run.dir={run}")
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if (run / "checkpoints" / "last.ckpt").exists():
            time.sleep(0.4)  # into the second epoch
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal"
    os.kill(proc.pid, signum)
    _, stderr = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_stop_signal_checkpoints_the_current_step(tmp_path: Path, signum: int) -> None:
    run = tmp_path / "run"
    proc = _signal_mid_run(ARGS, run, signum)
    assert proc.returncode == 128 + signum, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("litseg:")]
    assert len(lines) == 1 and lines[0].startswith("litseg: interrupted:"), proc.stderr
    assert signal.Signals(signum).name in lines[0]
    summary = strict_json(run / "summary.json")
    assert summary["status"] == "interrupted"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == summary["global_step"] > 0


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_finishes_the_run_with_its_history(tmp_path: Path) -> None:
    full = tmp_path / "full"
    proc = run_cli("train.py", *ARGS, f"hydra.run.dir={full}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    logs = tmp_path / "logs"
    stopped = logs / "stops" / "runs" / "stopped"
    proc = _signal_mid_run([*ARGS, f"paths.log_dir={logs}"], stopped, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    step = strict_json(stopped / "summary.json")["global_step"]

    proc = run_cli("train.py", *ARGS, f"paths.log_dir={logs}", "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = next(p for p in (logs / "stops" / "runs").iterdir() if p != stopped)
    summary = strict_json(resumed / "summary.json")
    assert summary["resumed_from"] == str(stopped / "checkpoints" / "last.ckpt")
    assert summary["history"][-1]["status"] == "interrupted"
    assert summary["status"] == "completed" and summary["epochs"] == 4 and step > 0
    # the resumed run trains on from the stopped step to the same end (exact replay of a
    # mid-epoch stop, to 1e-5: tests/test_resume_mid_epoch.py)
    expected = strict_json(full / "summary.json")["metrics"]
    assert summary["metrics"]["val/mIoU"] == pytest.approx(expected["val/mIoU"], abs=0.2)
    # the resumed run's csv carries the epochs before the stop as well
    rows = (resumed / "csv" / "metrics.csv").read_text().splitlines()
    epochs = {line.split(",")[0] for line in rows[1:]}
    assert {"0", "3"} <= epochs, epochs  # epoch 0 from the stopped run, 3 from this one
    assert math.isfinite(summary["metrics"]["val/loss"])


def test_step_checkpoints_keep_the_best_and_lightnings_own_switch_is_refused(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="last_every_n_train_steps"):
        ResumableModelCheckpoint(dirpath=tmp_path, every_n_train_steps=5)
    overrides = [
        *ARGS,
        "trainer.max_epochs=2",
        "callbacks.model_checkpoint.last_every_n_train_steps=3",
    ]
    cfg = compose_config("train", overrides, tmp_path / "run")
    try:
        result = train(cfg)
    finally:
        GlobalHydra.instance().clear()
    checkpoint = result["objects"]["trainer"].checkpoint_callback
    assert checkpoint.last_every_n_train_steps == 3
    assert Path(result["best_checkpoint"]).is_file()  # epoch-end best saving still on
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 16
