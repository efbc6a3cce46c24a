"""The command line as users run it: train.py and eval.py as subprocesses from the root."""

import json
from pathlib import Path

import pytest

from tests.helpers import TINY, run_cli

pytestmark = pytest.mark.slow
FAST = [*TINY, "logger=csv"]


def test_train_fast_dev_run(tmp_path: Path) -> None:
    run = run_cli(
        "train.py",
        "model=unet",
        "loss=dice",
        "trainer.fast_dev_run=true",
        *FAST,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file()
    assert "Run directory" in run.stdout + run.stderr


def test_multirun_makes_one_dir_per_job(tmp_path: Path) -> None:
    run = run_cli(
        "train.py",
        "-m",
        "loss=dice,dice_ce",
        "trainer.fast_dev_run=true",
        *FAST,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job, loss in zip(jobs, ["dice", "dice_ce"], strict=True):
        overrides = (tmp_path / "sweep" / job / ".hydra" / "overrides.yaml").read_text()
        assert f"loss={loss}" in overrides
        assert (tmp_path / "sweep" / job / "summary.json").is_file()


def test_train_then_eval_on_the_checkpoint(tmp_path: Path) -> None:
    run = run_cli(
        "train.py",
        "debug=limit",
        "trainer.max_epochs=1",
        "model=unet",
        "loss=ce",
        *FAST,
        f"hydra.run.dir={tmp_path / 'train'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "train" / "summary.json").read_text())
    ckpt = summary["best_checkpoint"]
    assert Path(ckpt).is_file()

    # no model/loss/data given: eval restores them from the checkpoint (depth 3, width 8)
    run = run_cli(
        "eval.py", f"ckpt_path={ckpt}", "data.num_workers=0", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "test/mIoU" in run.stdout
    result = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert 0.0 <= result["metrics"]["test/mIoU"] <= 1.0
    assert result["metrics"]["test/mIoU"] == pytest.approx(summary["metrics"]["test/mIoU"])
    assert (tmp_path / "eval" / "csv" / "metrics.csv").is_file()


def test_loss_task_mismatch_is_a_clear_config_error(tmp_path: Path) -> None:
    run = run_cli("train.py", "loss=bce", *FAST, f"hydra.run.dir={tmp_path / 'run'}")
    assert run.returncode == 2
    assert "loss=bce does not fit data.task=multiclass" in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_existing_run_dir_is_never_overwritten(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "best.ckpt").write_bytes(b"precious")
    run = run_cli("train.py", "trainer.fast_dev_run=true", *FAST, f"hydra.run.dir={run_dir}")
    assert run.returncode != 0
    assert f"hydra.run.dir={run_dir} already holds a run" in run.stderr
    assert (run_dir / "checkpoints" / "best.ckpt").read_bytes() == b"precious"
    assert not (run_dir / ".hydra").exists()


def test_eval_names_a_missing_checkpoint(tmp_path: Path) -> None:
    run = run_cli(
        "eval.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert run.returncode == 2
    assert f"ckpt_path={tmp_path / 'nope.ckpt'}: no such checkpoint file" in run.stderr
