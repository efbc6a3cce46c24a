"""litseg's Optuna sweeper (hydra/sweeper=litseg_optuna, Optuna 5): search space, samplers and
pruners, pruning inside a real training, a persistent study that a killed sweep resumes, and a
study shared by two sweeps on a real PostgreSQL server."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.litseg_optuna_sweeper._impl import (
    ERROR,
    OWNER,
    RETRY_OF,
    SURPLUS,
    OptunaSweeperImpl,
    format_value,
    make_sampler,
    owner_id,
    owner_is_dead,
    parse_search_space,
)
from litseg.errors import ConfigError, TrialPruned
from litseg.optuna_trial import (
    ENV_PRUNER,
    ENV_STORAGE,
    ENV_STUDY,
    ENV_TRIAL,
    make_pruner,
    open_storage,
)
from tests.helpers import compose_config, run_cli, start_cli
from tests.helpers.apt import apt_install

D = optuna.distributions
# one tiny training per trial: one batch of 8 images of 32x32, one validation batch
SWEEP = [
    "hparams_search=optuna",
    *[f"data.splits.{split}.length=8" for split in ("train", "val", "test")],
    "data.batch_size=8",
    "data.eval_batch_size=8",
    "data.num_workers=0",
    "data.dataset.image_size=32",
    "data.crop_size=32",
    "model.base_width=8",
    "model.depth=3",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "test=false",
]
# a wide learning-rate range makes some trials clearly worse than others
WIDE_LR = "optimizer.lr=tag(log, interval(1e-5, 1e-1))"
# Hydra's console format for a record of a logger outside litseg and Hydra, below WARNING
FOREIGN_INFO = re.compile(r"^\[[^\]]*\]\[(?!litseg[.\]]|HYDRA\])[\w.]+\]\[(INFO|DEBUG)\]")


def assert_quiet_sweep(proc: subprocess.CompletedProcess, what: str) -> None:
    """No INFO line of another library (optuna, alembic, sqlalchemy, urllib3) and no note of
    Optuna's about experimental heartbeats in a sweep's output."""
    lines = (proc.stdout + proc.stderr).splitlines()
    foreign = [line for line in lines if FOREIGN_INFO.match(line)]
    assert not foreign, f"{what}: {foreign}"
    noise = ("alembic", "sqlalchemy", "urllib3", "Context impl", "[I 20", "Heartbeat", "Experim")
    assert not [line for line in lines if any(n in line for n in noise)], what


# -- search space, samplers, pruners ------------------------------------------------------


def test_search_space_in_the_yaml_style_of_hparams_search(tmp_path: Path) -> None:
    cfg = compose_config("train", ["hparams_search=optuna"], tmp_path)
    from hydra.core.hydra_config import HydraConfig

    params = HydraConfig.get().sweeper.params
    space, fixed = parse_search_space(
        [f"{k}={v}" for k, v in params.items()]
        + ["model.depth=range(2, 6)", "seed=7", "x=tag(log, int, interval(8, 64))"]
    )
    assert cfg.callbacks.optuna_pruning.monitor == cfg.monitor.metric
    assert space["optimizer.lr"].distribution == D.FloatDistribution(1e-4, 1e-2, log=True)
    assert space["loss.weights.dice"].distribution == D.FloatDistribution(0.25, 2.0)
    assert space["model.base_width"].distribution == D.CategoricalDistribution([8, 16, 32])
    assert space["augment"].distribution == D.CategoricalDistribution(["none", "basic"])
    # Python's range: the stop is left out
    assert space["model.depth"].distribution == D.IntDistribution(2, 5, step=1)
    assert space["model.depth"].grid == [2, 3, 4, 5]
    assert space["x"].distribution == D.IntDistribution(8, 64, log=True)
    assert fixed == {"seed": "7"}
    # a fixed value on the command line takes the parameter out of the search
    space, fixed = parse_search_space(["model.base_width=choice(8, 16)", "model.base_width=8"])
    assert space == {} and fixed == {"model.base_width": "8"}
    with pytest.raises(ConfigError, match=r"params.optimizer.lr: a log interval needs a start"):
        parse_search_space(["optimizer.lr=tag(log, interval(0, 1))"])


def test_sampled_values_read_back_as_the_same_override() -> None:
    parser = OverridesParser.create()
    for value in (0.000123, 1e-07, 16, "basic", "a b", "it's", True, False, None):
        parsed = parser.parse_override(f"key={format_value(value)}").value()
        assert parsed == value, (value, format_value(value))


def test_samplers_and_pruners_by_name_with_their_own_blocks() -> None:
    space, _ = parse_search_space(["a=interval(0, 1)", "b=choice(x, y)", "c=range(1, 4)"])
    grid_space = {k: v for k, v in space.items() if k != "a"}
    kinds = {
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
        "cmaes": optuna.samplers.CmaEsSampler,
    }
    blocks = {"tpe": {"n_startup_trials": 3}, "cmaes": {"n_startup_trials": 2}}
    for name, kind in kinds.items():
        sampler, grid = make_sampler({"name": name, "seed": 1, **blocks}, space)
        assert isinstance(sampler, kind) and grid is None
    sampler, grid = make_sampler({"name": "grid", "seed": 1, **blocks}, grid_space)
    assert isinstance(sampler, optuna.samplers.GridSampler) and grid == 6
    with pytest.raises(ConfigError, match=r"sampler.name=grid needs choice\(\) or range\(\).*: a"):
        make_sampler({"name": "grid"}, space)
    with pytest.raises(ConfigError, match=r"hydra.sweeper.sampler.name='annealing'; expected"):
        make_sampler({"name": "annealing"}, space)
    with pytest.raises(ConfigError, match=r"hydra.sweeper.sampler.tpe: unknown key\(s\) \['n_'"):
        make_sampler({"name": "tpe", "tpe": {"n_": 1}}, space)
    with pytest.raises(ConfigError, match=r"hydra.sweeper.sampler: unexpected key\(s\) \['n_s"):
        make_sampler({"name": "tpe", "n_startup_trials": 1}, space)

    median = make_pruner({"name": "median", "median": {"n_warmup_steps": 2}, "hyperband": {}})
    assert isinstance(median, optuna.pruners.MedianPruner)
    hyperband = make_pruner({"name": "hyperband", "hyperband": {"max_resource": 9}})
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner({"name": "none"}), optuna.pruners.NopPruner)
    with pytest.raises(ConfigError, match=r"hydra.sweeper.pruner.name='asha'; expected"):
        make_pruner({"name": "asha"})


def test_the_grid_sampler_asks_each_point_once_and_tell_never_stops_the_study() -> None:
    space, _ = parse_search_space(["b=choice(x, y)", "c=range(1, 4)"])
    sampler, size = make_sampler({"name": "grid", "seed": 0}, space)
    study = optuna.create_study(sampler=sampler)
    points = set()
    for _ in range(size):
        trial = study.ask({k: p.distribution for k, p in space.items()})
        points.add((trial.params["b"], trial.params["c"]))
        study.tell(trial, 1.0)  # Optuna's own GridSampler raises here at the last point
    assert points == {(b, c) for b in "xy" for c in (1, 2, 3)}


def test_a_trial_owner_is_dead_once_its_process_is_gone() -> None:
    assert not owner_is_dead(owner_id())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host = socket.gethostname()
    assert owner_is_dead(f"{host}:{child.pid}:")
    assert not owner_is_dead(f"another-host-{host}:{child.pid}:")  # its heartbeat decides
    # a pid reused by another process: the start time differs
    assert owner_is_dead(f"{host}:{os.getpid()}:1")


def test_trials_of_a_silent_sweep_on_another_machine_are_failed_and_asked_again(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweeper = OptunaSweeperImpl(
        direction="minimize",
        study_name="s",
        storage=url,
        n_trials=3,
        n_jobs=1,
        sampler={"name": "random"},
        pruner={"name": "none"},
        heartbeat_interval=1,
        grace_period=2,
        max_failure_rate=0.0,
        params={},
    )
    sweeper.sweep_dir = tmp_path
    space, _ = parse_search_space(["x=interval(0, 1)"])
    study, storage = sweeper._open_study(make_sampler({"name": "random"}, space)[0])
    trial = study.ask({"x": space["x"].distribution})
    # what the sweep process on the other machine did before it went silent
    storage.record_heartbeat(sweeper._trial_id(storage, study, 0))
    trial.set_user_attr(OWNER, f"elsewhere-{socket.gethostname()}:{os.getpid()}:")
    sweeper._reclaim_dead_trials(study, storage)
    assert [t.state.name for t in study.trials] == ["RUNNING"]  # within its grace period
    time.sleep(3)
    sweeper._reclaim_dead_trials(study, storage)
    stale, again = study.trials
    assert (stale.state.name, again.state.name) == ("FAIL", "WAITING")
    assert again.user_attrs[RETRY_OF] == 0 and again.system_attrs["fixed_params"] == trial.params
    # the retry takes its place when it is asked (the next ask), not while it waits
    assert sweeper.counts(study.trials) == []
    asked = study.ask({"x": space["x"].distribution})
    assert asked.number == again.number and asked.params == trial.params
    assert [t.number for t in sweeper.counts(study.trials)] == [again.number]


def test_a_storage_that_is_not_a_database_url_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hydra.sweeper.storage='optuna.db' is not a database"):
        open_storage("optuna.db")
    proc = run_cli(
        "train.py",
        "hparams_search=optuna",
        "hydra.sweeper.pruner.name=asha",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "litseg: error: hydra.sweeper.pruner.name='asha'; expected one of median, hyperband, none"
    ]


# -- pruning inside a real training ---------------------------------------------------------


@pytest.mark.slow
def test_the_pruning_callback_stops_a_poor_trial_and_its_summary_says_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    spec = {"name": "median", "median": {"n_startup_trials": 1}}
    study = optuna.create_study(
        study_name="s", storage=url, direction="maximize", pruner=make_pruner(spec)
    )
    # a finished trial far better at every epoch than any 2-epoch run can be
    best = study.ask()
    for step in range(3):
        best.report(1.0, step)
    study.tell(best, 1.0)
    trial = study.ask()
    for var, value in (
        (ENV_STUDY, "s"),
        (ENV_STORAGE, url),
        (ENV_TRIAL, str(trial.number)),
        (ENV_PRUNER, json.dumps(spec)),
    ):
        monkeypatch.setenv(var, value)
    cfg = compose_config("train", [*SWEEP, "trainer.max_epochs=2"], tmp_path / "run")
    from litseg.train import train

    with pytest.raises(TrialPruned, match=r"trial 1 pruned at epoch 0: val/mIoU="):
        train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["epochs"] == 0
    reported = study.trials[trial.number].intermediate_values
    assert list(reported) == [0]
    assert reported[0] == pytest.approx(summary["metrics"]["val/mIoU"])


@pytest.mark.slow
def test_six_trials_with_pruning_all_in_the_study_and_the_leaderboard(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py",
        *SWEEP,
        "trainer.max_epochs=2",
        # the loss, not mIoU: on so little data most trials predict background only after two
        # epochs, with the same mIoU, and the median pruner prunes only the worse ones
        "monitor.metric=val/loss",
        "monitor.mode=min",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.sampler.name=random",
        "hydra.sweeper.pruner.median.n_startup_trials=1",
        "hydra.sweeper.pruner.median.n_warmup_steps=0",
        WIDE_LR,
        "model.base_width=8",
        f"hydra.sweep.dir={sweep}",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_quiet_sweep(proc, "optuna sweep")
    study = optuna.load_study(study_name="train", storage=f"sqlite:///{sweep / 'optuna.db'}")
    states = {t.number: t.state.name for t in study.trials}
    assert sorted(states) == list(range(6)), states
    assert set(states.values()) <= {"COMPLETE", "PRUNED"}, states
    pruned = sorted(n for n, s in states.items() if s == "PRUNED")
    assert pruned, f"no trial pruned: {states}"
    for trial in study.trials:
        summary = json.loads((sweep / str(trial.number) / "summary.json").read_text())
        assert summary["status"] == ("pruned" if trial.number in pruned else "completed")
        assert f"optimizer.lr={trial.params['optimizer.lr']!r}" in summary["overrides"]
        # every validation epoch reached the study, as the pruner needs
        epochs = summary["epochs"] + 1 if trial.number in pruned else 2
        assert sorted(trial.intermediate_values) == list(range(epochs))
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["n_trials"] == 6 and results["pruned"] == len(pruned)
    assert results["best_value"] == pytest.approx(study.best_value)

    board = run_cli("scripts/summarize_sweep.py", str(sweep))
    assert board.returncode == 0, board.stderr
    rows = [line for line in board.stdout.splitlines() if re.match(r"\| (\d+)? \| \d+ \|", line)]
    assert len(rows) == 6
    assert sum(line.endswith("| pruned |") for line in rows) == len(pruned)
    assert all(line.endswith("| done |") for line in rows[: 6 - len(pruned)])


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_exactly_n_trials(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    storage = f"sqlite:///{first / 'optuna.db'}"
    args = [*SWEEP, "trainer.max_epochs=1", "hydra.sweeper.n_trials=4"]
    args += ["hydra.sweeper.pruner.name=none", "hydra.sweeper.study_name=resumable"]
    with open(tmp_path / "first.err", "w") as err:
        proc = start_cli("train.py", *args, f"hydra.sweep.dir={first}", stderr=err)

    def running() -> int | None:
        """k when the study holds k >= 2 completed trials and trial k runs in its folder."""
        try:
            states = [
                t.state.name
                for t in optuna.load_study(study_name="resumable", storage=storage).trials
            ]
        except Exception:  # no database yet, or the sweep is still creating the study's tables
            return None
        k = len(states) - 1
        done = states == ["COMPLETE"] * k + ["RUNNING"]
        if done and k >= 2 and (first / str(k) / ".hydra" / "overrides.yaml").is_file():
            return k
        return None

    try:
        deadline = time.time() + 600
        # kill the sweep inside its third trial (or, on a slow poll, its fourth): the sweep is
        # frozen (SIGSTOP, trials run in its process) and the study read again, so the trial
        # killed is the one that was running, whatever the machine's load
        while True:
            assert proc.poll() is None, (tmp_path / "first.err").read_text()[-3000:]
            assert time.time() < deadline, "the sweep did not reach its third trial"
            if running() is not None:
                proc.send_signal(signal.SIGSTOP)
                killed = running()
                if killed is not None:
                    break
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed in (2, 3), f"the sweep ran past its last trial before the kill ({killed})"

    resumed = run_cli(
        "train.py",
        *args,
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={second}",
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Trial {killed} was left running by a stopped sweep" in resumed.stdout + resumed.stderr
    trials = optuna.load_study(study_name="resumable", storage=storage).trials
    states = [t.state.name for t in trials]
    # the killed trial failed, its parameters asked again as the next trial, then new trials up
    # to 4 complete in all
    assert states == ["COMPLETE"] * killed + ["FAIL"] + ["COMPLETE"] * (4 - killed)
    retry = trials[killed + 1]
    assert ERROR not in trials[killed].user_attrs and retry.user_attrs[RETRY_OF] == killed
    assert retry.params == trials[killed].params
    second_jobs = [str(n) for n in range(killed + 1, 5)]
    assert sorted(p.name for p in second.iterdir() if p.name.isdigit()) == second_jobs
    done = [f"first/{n}" for n in range(killed)] + [f"second/{n}" for n in second_jobs]
    for job in done:
        summary = json.loads((tmp_path / job / "summary.json").read_text())
        assert summary["status"] == "completed", job
    results = yaml.safe_load((second / "optimization_results.yaml").read_text())
    assert results["n_trials"] == 4 and results["complete"] == 4

    # a third run of the finished study runs nothing
    again = run_cli(
        "train.py", *args, f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'x'}"
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 of 4 trials there" in again.stdout + again.stderr
    assert len(optuna.load_study(study_name="resumable", storage=storage).trials) == 5

    board = run_cli("scripts/summarize_sweep.py", str(first), str(second))
    assert board.returncode == 0, board.stderr
    for job in done:
        assert re.search(rf"\| \d \| {job} \|.*\| done \|", board.stdout), board.stdout
    assert re.search(rf"\|  \| first/{killed} \|.*\| unfinished \|", board.stdout), board.stdout


# -- n_trials over several sweep processes -------------------------------------------------

# One sweep process without training: the sweeper's own ask loop on a shared study, each trial
# told at once with its value, so that the processes race for the last places.
RACER = """
import json, sys, time
from hydra_plugins.litseg_optuna_sweeper._impl import OptunaSweeperImpl, _Heartbeats, make_sampler
from hydra_plugins.litseg_optuna_sweeper._impl import parse_search_space
from pathlib import Path
url, n_trials, start_at, folder = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
sweeper = OptunaSweeperImpl(
    direction="minimize", study_name="race", storage=url, n_trials=n_trials, n_jobs=2,
    sampler={"name": "random"}, pruner={"name": "none"}, heartbeat_interval=5,
    grace_period=60, max_failure_rate=0.0, params={"x": "interval(0, 1)"},
)
sweeper.sweep_dir = Path(folder)
space, _ = parse_search_space(["x=interval(0, 1)"])
study, storage = sweeper._open_study(make_sampler({"name": "random"}, space)[0])
heartbeats = _Heartbeats(storage, 5)
distributions = {k: p.distribution for k, p in space.items()}
time.sleep(max(0.0, start_at - time.time()))
ran = []
while batch := sweeper.ask_batch(study, storage, heartbeats, distributions):
    for trial, trial_id in batch:
        study.tell(trial, trial.params["x"])
        heartbeats.remove(trial_id)
        ran.append(trial.number)
heartbeats.close()
print(json.dumps(ran))
"""


def race(url: str, n_trials: int, processes: int, folder: Path) -> list[list[int]]:
    """Start ``processes`` sweep loops on one study at the same moment; the trial numbers
    each ran."""
    start_at = time.time() + 20  # after every process has imported what it needs
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url, str(n_trials), str(start_at), str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    ran = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        ran.append(json.loads(out.strip().splitlines()[-1]))
    return ran


def assert_exact_budget(url: str, n_trials: int, ran: list[list[int]]) -> None:
    """The study holds n_trials counted trials, each run by exactly one process; the rest
    are surplus trials failed before they ran."""
    trials = optuna.load_study(study_name="race", storage=url).trials
    complete = sorted(t.number for t in trials if t.state.name == "COMPLETE")
    assert len(complete) == n_trials, [t.state.name for t in trials]
    assert sorted(n for numbers in ran for n in numbers) == complete
    surplus = [t for t in trials if t.state.name != "COMPLETE"]
    assert all(t.state.name == "FAIL" and t.user_attrs.get(SURPLUS) for t in surplus)


@pytest.mark.slow
def test_three_sweep_processes_fill_one_sqlite_study_to_exactly_n_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    ran = race(url, 12, 3, tmp_path)
    assert_exact_budget(url, 12, ran)


# -- a study shared by two sweeps on a real PostgreSQL server --------------------------------


def _postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's newest postgresql, or the PATH."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port (as the postgres user when root); its
    database URL for Optuna. Skipped, with the reason, where no server can start."""
    pytest.importorskip("psycopg", reason="psycopg (the sweep extra) is not installed")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        why = apt_install("postgresql")
        bin_dir = _postgres_bin()
        if bin_dir is None:
            pytest.skip(f"no PostgreSQL server binaries (initdb, pg_ctl): {why}")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser to start PostgreSQL as postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="litseg-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()

    def pg(*cmd: str, timeout: int = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*as_user, *cmd], capture_output=True, text=True, timeout=timeout, cwd=root
        )

    started = False
    try:
        init = pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "litseg", "--auth=trust")
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = pg(
            str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
            "-w", "-t", "60", "start",
        )  # fmt: skip
        if start.returncode != 0:
            pytest.skip(f"pg_ctl start failed: {start.stderr.strip()[-300:]}")
        started = True
        create = pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "litseg",
                    "optuna")  # fmt: skip
        assert create.returncode == 0, create.stderr
        yield f"postgresql+psycopg://litseg@127.0.0.1:{port}/optuna"
    finally:
        if started:
            pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_three_sweep_processes_fill_one_postgresql_study_to_exactly_n_trials(
    tmp_path: Path, postgres_url: str
) -> None:
    ran = race(postgres_url, 12, 3, tmp_path)
    assert_exact_budget(postgres_url, 12, ran)
    assert all(ran), f"a process ran no trial: {ran}"


@pytest.mark.slow
def test_two_sweeps_share_one_study_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    n_trials = 4
    args = [*SWEEP, "trainer.max_epochs=1", f"hydra.sweeper.n_trials={n_trials}"]
    args += ["hydra.sweeper.pruner.name=none", "hydra.sweeper.study_name=shared"]
    args += [f"hydra.sweeper.storage={postgres_url}", WIDE_LR]
    dirs = [tmp_path / "a", tmp_path / "b"]
    with ThreadPoolExecutor(2) as pool:  # two sweep processes at once
        runs = list(
            pool.map(
                lambda d: run_cli("train.py", *args, f"hydra.sweep.dir={d}", timeout=900), dirs
            )
        )
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        assert_quiet_sweep(run, "sweep on PostgreSQL")

    trials = optuna.load_study(study_name="shared", storage=postgres_url).trials
    counted = [t for t in trials if t.state.name != "FAIL"]
    # exactly n_trials ran to the end; a trial both sweeps asked for at once beyond the budget
    # is failed before it runs
    assert len(counted) == n_trials and {t.state.name for t in counted} == {"COMPLETE"}
    assert all(t.user_attrs.get(SURPLUS) for t in trials if t.state.name == "FAIL")
    folders = {p.name: d for d in dirs for p in d.iterdir() if p.name.isdigit()}
    assert sorted(folders, key=int) == [str(t.number) for t in counted]  # no trial lost
    owners = set()
    for trial in counted:
        folder = folders[str(trial.number)] / str(trial.number)
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert summary["best_score"] == pytest.approx(trial.value)
        owners.add(trial.user_attrs[OWNER])
    assert len(owners) == 2 and all(any(p.name.isdigit() for p in d.iterdir()) for d in dirs)
