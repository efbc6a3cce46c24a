"""scripts/plot_run.py and litseg.learning_curves: the learning-curve PNG of a real run,
resumed-run CSVs, clear errors."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litseg import learning_curves
from tests.helpers import TINY, run_cli


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-epoch run on the generated shapes, through the CLI."""
    run_dir = tmp_path_factory.mktemp("plot_run") / "run"
    proc = run_cli(
        "train.py",
        *TINY,
        "logger=csv",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1",
        "test=false",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def _check_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert 1000 <= width <= 4000 and 300 <= height <= 1500 and width > 2 * height
    assert pixels.std() > 5  # curves, axes and text, not a blank canvas


@pytest.mark.slow
def test_learning_curve_of_a_real_run(tiny_run: Path, tmp_path: Path) -> None:
    proc = run_cli("scripts/plot_run.py", str(tiny_run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_png(tiny_run / "learning_curve.png")

    other = tmp_path / "elsewhere" / "curve.png"
    proc = run_cli("scripts/plot_run.py", str(tiny_run), "--out", str(other))
    assert proc.returncode == 0, proc.stderr[-2000:]
    _check_png(other)

    metrics = learning_curves.read_metrics(learning_curves.metric_files(tiny_run))
    assert (
        learning_curves.choose_monitor(metrics, learning_curves.read_monitor(tiny_run)[0])
        == "val/mIoU"
    )
    assert sorted(metrics.by_epoch["train/loss_epoch"]) == [0, 1]
    assert len(metrics.by_step["train/loss_step"]) == 8  # 32 images, batch 8, 2 epochs
    assert any(name.startswith("lr-") for name in metrics.by_step)


def test_run_without_metrics_is_one_clear_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    proc = run_cli("scripts/plot_run.py", str(run_dir))
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "no metrics in" in lines[0] and "csv/metrics.csv" in lines[0]
    assert not (run_dir / "learning_curve.png").exists()


def _write_csv(path: Path, header: str, rows: list[str], mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    os.utime(path, (mtime, mtime))


def test_resumed_run_versions_merge_and_config_monitor_wins(tmp_path: Path) -> None:
    """Two version folders: the later file wins where both give an epoch; monitor from config."""
    header = "epoch,lr-AdamW,step,train/loss_epoch,train/loss_step,val/dice,val/loss,val/mIoU"
    _write_csv(
        tmp_path / "csv" / "version_0" / "metrics.csv",
        header,
        [
            ",0.001,0,,,,,",
            "0,,1,,0.9,,,",
            "0,,3,0.8,,0.50,0.7,0.40",
            ",0.002,4,,,,,",
            "1,,7,0.6,,0.55,0.6,0.45",  # the interrupted run's epoch 1
        ],
        mtime=1_000_000,
    )
    _write_csv(
        tmp_path / "csv" / "version_1" / "metrics.csv",
        header,
        [
            ",0.002,4,,,,,",
            "1,,5,,0.65,,,",
            "1,,7,0.55,,0.60,0.5,0.50",  # the resumed run's epoch 1
            ",0.001,8,,,,,",
            "2,,11,0.5,,0.62,0.45,0.52",
        ],
        mtime=2_000_000,
    )
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(
        "task_name: membrane\nmonitor:\n  metric: val/dice\n  mode: max\n"
    )
    files = learning_curves.metric_files(tmp_path)
    assert [f.parent.name for f in files] == ["version_0", "version_1"]
    metrics = learning_curves.read_metrics(files)
    assert metrics.by_epoch["val/dice"] == {0: 0.50, 1: 0.60, 2: 0.62}
    assert metrics.by_step["train/loss_step"] == {1: 0.9, 5: 0.65}
    assert metrics.by_step["lr-AdamW"] == {0: 0.001, 4: 0.002, 8: 0.001}
    assert (
        learning_curves.choose_monitor(metrics, learning_curves.read_monitor(tmp_path)[0])
        == "val/dice"
    )
    # epoch ends at steps 4, 8, 12: a per-step value sits at its fraction of its epoch
    axis = learning_curves.EpochAxis(metrics.epoch_end)
    assert axis([4, 6, 12]).tolist() == [1.0, 1.5, 3.0]
    out = learning_curves.plot(tmp_path, tmp_path / "curve.png")
    _check_png(out)
