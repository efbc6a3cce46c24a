"""The console shows litseg's progress and results, and nothing from other libraries unless
it is a real problem: train, eval, predict and export as real subprocesses."""

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import TINY, run_cli

# A log line of Hydra's format from another library's logger below WARNING.
FOREIGN_INFO = re.compile(r"^\[[^\]]*\]\[(?!litseg[.\]])[\w.]+\]\[(INFO|DEBUG)\]")
# A line of a litseg logger in Hydra's format.
LITSEG_LINE = re.compile(r"^\[[^\]]*\]\[litseg[.\w]*\]\[(INFO|WARNING|ERROR)\] - ")
# What other libraries printed before, none of it actionable by a litseg user.
NOISE = (
    "alembic",  # 7 INFO lines when MONAI pulls in optuna
    "onnxscript",  # 11 INFO lines per export
    "litlogger",
    "litmodels",
    "Trainer already configured",
    "GPU available",
    "Total FLOPs",
    "LeafSpec",
    "set_vital",
    "TracerWarning",
    "is deprecated",
    "sync_dist",
)


def assert_quiet(run, what: str, stderr_lines: re.Pattern[str] | None = None) -> None:
    """No foreign INFO line and no known noise in the output; stderr holds only lines
    matching ``stderr_lines`` (nothing when None)."""
    assert run.returncode == 0, f"{what}: {run.stderr[-3000:]}"
    lines = (run.stdout + run.stderr).splitlines()
    foreign = [line for line in lines if FOREIGN_INFO.match(line)]
    assert not foreign, f"{what} printed other libraries' INFO lines: {foreign}"
    assert not [line for line in lines if re.match(r"^(INFO|DEBUG)\b", line)], what
    noise = [line for line in lines if any(n in line for n in NOISE)]
    assert not noise, f"{what} printed: {noise}"
    errors = [
        line
        for line in run.stderr.splitlines()
        if line.strip() and not (stderr_lines and stderr_lines.match(line))
    ]
    assert not errors, f"{what} wrote to stderr: {errors}"


@pytest.mark.slow
def test_train_eval_predict_export_print_only_litseg(tmp_path: Path) -> None:
    # boundary metrics on: importing MONAI is what brought alembic's lines
    train = run_cli(
        "train.py",
        *TINY,
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",  # 4 batches: nothing for Lightning to warn about
        "module.boundary_metric=true",
        f"hydra.run.dir={tmp_path / 'train'}",
    )
    assert_quiet(train, "train.py")
    assert "[litseg.train][INFO] - Run directory:" in train.stdout
    assert "Final metrics after" in train.stdout and "test/HD95=" in train.stdout
    log = (tmp_path / "train" / "train.log").read_text()
    # the run's log file keeps litseg's lines (Optuna 5, which MONAI imports, no longer brings
    # alembic's INFO lines, once the example of what the console leaves out)
    assert "[litseg.train][INFO] - Run directory:" in log
    ckpt = json.loads((tmp_path / "train" / "summary.json").read_text())["best_checkpoint"]

    evaluation = run_cli(
        "eval.py",
        f"ckpt_path={ckpt}",
        "data.num_workers=0",
        "report.worst_k=2",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    assert_quiet(evaluation, "eval.py")
    assert "| mIoU |" in evaluation.stdout

    # predict and export write where they are told and nowhere else: no run folder, no
    # .hydra/ in the working directory, no log file
    cwd, logs = tmp_path / "cwd", tmp_path / "logs"
    cwd.mkdir()
    image = tmp_path / "inputs" / "a.png"
    image.parent.mkdir()
    Image.new("RGB", (45, 61), (120, 80, 40)).save(image)
    predict = run_cli(
        "predict.py",
        f"ckpt_path={ckpt}",
        f"input={image}",
        f"output={tmp_path / 'masks'}",
        "progress=false",
        f"paths.log_dir={logs}",
        cwd=cwd,
    )
    assert_quiet(predict, "predict.py", LITSEG_LINE)
    assert "[litseg.predict][INFO] - Wrote 1 masks" in predict.stderr
    assert (tmp_path / "masks" / "a.png").is_file()

    export = run_cli(
        "scripts/export.py",
        f"ckpt_path={ckpt}",
        f"output={tmp_path / 'onnx' / 'model.onnx'}",
        f"paths.log_dir={logs}",
        cwd=cwd,
    )
    assert_quiet(export, "export.py", LITSEG_LINE)
    assert export.stdout.startswith("max_abs_diff=")
    assert "[litseg.export][INFO] - Exported onnx" in export.stderr
    assert list(cwd.iterdir()) == [] and not logs.exists()


@pytest.mark.slow
def test_a_failed_command_prints_its_error_once_and_leaves_no_run_folder(
    tmp_path: Path,
) -> None:
    run = run_cli(
        "eval.py", f"ckpt_path={tmp_path / 'missing.ckpt'}", f"paths.log_dir={tmp_path / 'logs'}"
    )
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "missing.ckpt" in run.stderr
    assert "missing.ckpt" not in run.stdout
    assert list((tmp_path / "logs").iterdir()) == []


@pytest.mark.slow
def test_ddp_run_prints_no_sync_dist_warnings(tmp_path: Path) -> None:
    """Two processes over gloo: litseg's metrics are synchronised by torchmetrics, so
    Lightning's advice to sync them (once per metric, 25 lines) is not shown."""
    run = run_cli(
        "train.py",
        "trainer=ddp_sim",
        *TINY,
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sync_dist" not in run.stdout + run.stderr
    assert not [line for line in run.stdout.splitlines() if FOREIGN_INFO.match(line)]
