"""Run directories: unique default names, and a folder claimed atomically by one run only."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from litseg.config import compose
from litseg.runtime.run_dir import CLAIM, SWEEP_CLAIM, RefuseExistingRunDir
from tests.helpers import CONF, ROOT, TINY

# the cheapest real run: build everything, train and test nothing
CHEAP = [*TINY, "train=false", "test=false", "logger=none"]
STAMP = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d"  # the seconds part of a default folder name


def _default_run_dir(log_dir: Path) -> str:
    """``hydra.run.dir`` as a fresh ``python train.py`` would resolve it."""
    cfg = compose([f"paths.log_dir={log_dir}"], return_hydra_config=True, conf_dir=CONF)
    return str(cfg.hydra.run.dir)


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    for _ in range(20):  # two compositions a few ms apart, until both fall in one second
        first, second = _default_run_dir(tmp_path), _default_run_dir(tmp_path)
        seconds = [re.search(STAMP, name) for name in (first, second)]
        assert all(seconds), (first, second)
        if seconds[0].group() == seconds[1].group():
            break
    assert first != second
    assert Path(first).parent == Path(second).parent == tmp_path / "train" / "runs"
    assert re.fullmatch(STAMP + r"_\d{6}", Path(first).name), first
    # names still sort by start time
    assert sorted([first, second]) == [first, second]


def _run_config(run_dir: Path, sweep_dir: Path | None = None) -> DictConfig:
    sweep = {"dir": str(sweep_dir or run_dir.parent / "sweep"), "subdir": "0"}
    return OmegaConf.create({"hydra": {"run": {"dir": str(run_dir)}, "sweep": sweep}})


def test_a_check_alone_does_not_leave_the_folder_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the race of two starts: both pass the start-up check before either has written anything
    run_dir = tmp_path / "a" / "run"
    callback = RefuseExistingRunDir()
    callback.on_run_start(_run_config(run_dir))
    assert "claimed by litseg pid" in (run_dir / CLAIM).read_text()
    with pytest.raises(SystemExit) as exit_:
        callback.on_run_start(_run_config(run_dir))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"litseg: error: hydra.run.dir={run_dir} already holds a run")
    assert "(claimed by litseg pid" in err and len(err.splitlines()) == 1


def test_ddp_workers_join_the_claimed_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    callback = RefuseExistingRunDir()
    callback.on_run_start(_run_config(run_dir))
    before = (run_dir / CLAIM).read_text()
    for var in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"):
        monkeypatch.setenv(var, "1")
        callback.on_run_start(_run_config(run_dir))  # no exit: rank > 0 joins rank 0
        monkeypatch.delenv(var)
    assert (run_dir / CLAIM).read_text() == before
    # a worker of a run started elsewhere claims nothing either
    monkeypatch.setenv("LOCAL_RANK", "1")
    callback.on_run_start(_run_config(tmp_path / "other"))
    assert not (tmp_path / "other").exists()


def test_a_sweep_folder_is_claimed_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "sweep"
    callback = RefuseExistingRunDir()
    callback.on_multirun_start(_run_config(tmp_path / "run", sweep))
    claim = (sweep / SWEEP_CLAIM).read_text()
    assert claim.startswith("# claimed by litseg pid")
    assert OmegaConf.create(claim).hydra.sweep.dir == str(sweep)  # the sweep's config
    with pytest.raises(SystemExit) as exit_:
        callback.on_multirun_start(_run_config(tmp_path / "run", sweep))
    assert exit_.value.code == 2
    assert f"hydra.sweep.dir={sweep} already holds runs (claimed by" in capsys.readouterr().err


# Start ``python train.py ARGS`` with its imports done, then wait for the file GO before
# running it: the runs then reach their start-up checks together, not seconds apart.
AT_ONCE = """
import os, runpy, sys, time
import hydra, lightning, litseg.train
go, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
open(go + "." + str(os.getpid()), "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""


def _start_at_once(tmp_path: Path, commands: list[list[str]]) -> list[subprocess.Popen]:
    """Start ``python train.py <args>`` for each args list, released together."""
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", AT_ONCE, str(go), str(ROOT / "train.py"), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("go.*"))) < len(procs) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    go.touch()
    return procs


@pytest.mark.slow
def test_simultaneous_starts_into_one_run_dir_admit_exactly_one(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    procs = _start_at_once(
        tmp_path, [[*CHEAP, f"seed={i}", f"hydra.run.dir={run_dir}"] for i in range(4)]
    )
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2, 2, 2], [(p.returncode, err[-2000:]) for p, _, err in results]
    winner = next(i for i, (p, _, _) in enumerate(results) if p.returncode == 0)
    for p, _, err in results:
        if p.returncode == 2:
            lines = [line for line in err.splitlines() if line.startswith("litseg: error:")]
            assert len(lines) == 1, err[-2000:]
            assert lines[0].startswith(
                f"litseg: error: hydra.run.dir={run_dir} already holds a run"
            )
    # the folder holds the winner's run only: its config, its summary
    assert f"seed={winner}" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert f"seed={winner}" in (run_dir / "summary.json").read_text()
    assert f"pid {procs[winner].pid} " in (run_dir / CLAIM).read_text()


@pytest.mark.slow
def test_two_cli_runs_at_once_without_run_dir_get_two_folders(tmp_path: Path) -> None:
    procs = _start_at_once(tmp_path, [[*CHEAP, f"paths.log_dir={tmp_path / 'logs'}"]] * 2)
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    runs = sorted((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 2, runs
    for run in runs:
        assert re.fullmatch(STAMP + r"_\d{6}", run.name), run.name
        assert (run / CLAIM).is_file() and (run / "summary.json").is_file()


def test_a_folder_with_a_run_but_no_claim_is_still_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a run written before claims existed (checkpoints only) is protected as before
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_:
        RefuseExistingRunDir().on_run_start(_run_config(run_dir))
    assert exit_.value.code == 2
    assert f"hydra.run.dir={run_dir} already holds a run;" in capsys.readouterr().err
    assert not (run_dir / CLAIM).exists()
