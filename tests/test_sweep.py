"""Sweeps: Optuna (litseg's sweeper) over the submitit local launcher, and the leaderboard of a
multirun."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from scripts import summarize_sweep
from tests.helpers import run_cli

TINY_SWEEP = [
    "data.splits.train.length=16",
    "data.splits.val.length=16",
    "data.splits.test.length=16",
    "data.batch_size=8",
    "data.num_workers=0",
    "model.depth=3",
    "trainer.max_epochs=1",
    "callbacks.rich_progress_bar=null",
]


def _job(sweep: Path, num: int, overrides: list[str], best: float | None, mode: str) -> None:
    folder = sweep / str(num)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"monitor": {"metric": "val/loss", "mode": mode}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if best is not None:
        summary = {"monitor": "val/loss", "best_score": best, "epochs": 3, "duration_s": 1.0}
        summary["metrics"] = {"val/loss": best + 0.5, "val/mIoU": 0.5}
        (folder / "summary.json").write_text(json.dumps(summary))


def test_leaderboard_ranks_by_the_monitor_and_lists_unfinished_jobs_last(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = tmp_path / "sweep"
    for num, (lr, best) in enumerate([(0.1, 0.3), (0.01, None), (0.001, 0.2), (0.0001, 0.9)]):
        _job(sweep, num, [f"optimizer.lr={lr}", "seed=1"], best, mode="min")
    assert summarize_sweep.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "| rank | job | optimizer.lr | best val/loss |" in out
    assert "seed" not in out  # the same in every job: not a swept parameter
    with open(sweep / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["2", "0", "3", "1"]
    assert [r["rank"] for r in rows] == ["1", "2", "3", ""]
    assert rows[-1]["status"] == "unfinished"
    assert (sweep / "leaderboard.md").read_text().count("\n| ") == 5
    assert (sweep / "sweep.png").stat().st_size > 0
    # max mode reverses the order
    assert summarize_sweep.main([str(sweep), "--mode", "max", "--out", str(tmp_path / "o")]) == 0
    with open(tmp_path / "o" / "leaderboard.csv") as f:
        assert [r["job"] for r in csv.DictReader(f)] == ["3", "0", "2", "1"]


def test_a_job_killed_while_hydra_wrote_its_files_is_listed_unfinished(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sweep = tmp_path / "sweep"
    _job(sweep, 0, ["optimizer.lr=0.1"], 0.3, mode="min")
    (sweep / "1" / ".hydra").mkdir(parents=True)  # killed before any file was written
    (sweep / "2" / ".hydra").mkdir(parents=True)
    (sweep / "2" / ".hydra" / "config.yaml").write_text("monitor: {metric: val/lo")  # cut short
    (sweep / "not_a_job").mkdir()
    assert summarize_sweep.main([str(sweep)]) == 0
    with open(sweep / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["status"]) for r in rows] == [
        ("0", "done"),
        ("1", "unfinished"),
        ("2", "unfinished"),
    ]


def test_summarize_sweep_refuses_a_folder_without_jobs(tmp_path: Path) -> None:
    proc = run_cli("scripts/summarize_sweep.py", str(tmp_path))
    assert proc.returncode == 2
    assert "no job folders" in proc.stderr


@pytest.mark.slow
def test_optuna_two_trials_on_submitit_local_and_their_leaderboard(tmp_path: Path) -> None:
    sweep = tmp_path / "optuna"
    proc = run_cli(
        "train.py",
        "hparams_search=optuna",
        "hydra/launcher=submitit_local",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        *TINY_SWEEP,
        f"hydra.sweep.dir={sweep}",
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    scores = {}
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        scores[job] = summary["best_score"]
        assert any(o.startswith("optimizer.lr=") for o in summary["overrides"])
    # direction comes from monitor.mode=max: the best trial is the higher val/mIoU
    assert results["best_value"] == pytest.approx(max(scores.values()))
    # each submitit job reopened its trial in the sweep's study and reported its epoch
    import optuna

    study = optuna.load_study(study_name="train", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert [list(t.intermediate_values) for t in study.trials] == [[0], [0]]
    assert set(results["best_params"]) == {
        "optimizer.lr",
        "loss.weights.dice",
        "model.base_width",
        "augment",
    }

    proc = run_cli("scripts/summarize_sweep.py", str(sweep))
    assert proc.returncode == 0, proc.stderr
    assert "| rank | job | optimizer.lr |" in proc.stdout
    with open(sweep / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"done"}
    assert float(rows[0]["best val/mIoU"]) == pytest.approx(max(scores.values()))
    assert (sweep / "sweep.png").is_file()
