"""A real one-node SLURM cluster (Debian's slurmctld, slurmd and munge, brought up by
scripts/slurm_cluster.py): a Hydra sweep through sbatch, and a preempted job that checkpoints,
is requeued, resumes and ends where an uninterrupted job ends.

Skipped, with the reason, when the packages cannot be installed (apt-get, as root) or the
daemons do not start. Tolerance of the preemption test: 1e-5 relative, as tests/test_resume.py.
"""

import csv
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.slurm_cluster import (
    CRED_EXPIRE_S,
    PARTITION,
    ClusterError,
    SlurmCluster,
    install_packages,
    missing_commands,
)
from tests.helpers import ROOT, TINY, run_cli
from tests.helpers.apt import apt_lock

pytestmark = [pytest.mark.slow, pytest.mark.serial]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running cluster for this module; its logs are printed when a test fails."""
    if os.geteuid() != 0:
        pytest.skip("a SLURM cluster needs root here (slurmd starts jobs as their owner)")
    if missing_commands():
        try:
            with apt_lock():  # tests beside this one may be installing their packages
                install_packages()
        except ClusterError as exc:
            pytest.skip(f"SLURM packages not installable: {exc}")
        if missing_commands():
            pytest.skip(f"SLURM packages installed but {', '.join(missing_commands())} missing")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm") / "cluster")
    try:
        cluster.up()
    except ClusterError as exc:
        pytest.skip(f"SLURM daemons did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def slurm_env(slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """The cluster, with SLURM_CONF set for the commands the test starts."""
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    assert slurm.node_state() == "idle", slurm.run("sinfo", check=False)
    return slurm


ACTIVE = ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "CONFIGURING", "SUSPENDED")


def _job_state(cluster: SlurmCluster, job: str) -> dict[str, str]:
    """``scontrol show job``'s fields (JobState, Restarts, NodeList, ...)."""
    out = cluster.run("scontrol", "-o", "show", "job", job)
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


def _job_log(cluster: SlurmCluster, job: str) -> str:
    """The daemons' log lines about ``job`` (why it failed, was requeued or held)."""
    lines = []
    for name in ("slurmctld.log", "slurmd.log"):
        path = cluster.logs / name
        if path.is_file():
            lines += [
                f"{name}: {x}"
                for x in path.read_text(errors="replace").splitlines()
                if f"JobId={job} " in x + " " or f"job {job} " in x + " " or f"{job}.batch" in x
            ]
    return "\n".join(lines[-40:])


def _job_report(cluster: SlurmCluster, job: str, logs: Path) -> str:
    """What a failed assertion shows: the end of the job's output file and its daemon log lines."""
    out = logs / f"slurm-{job}.out"
    text = out.read_text()[-3000:] if out.is_file() else "(no output file)"
    return f"job output:\n{text}\nlogs:\n{_job_log(cluster, job)}"


def _wait(what: str, until: Callable[[], Any], timeout: float, poll: float = 0.2) -> Any:
    """Poll ``until()`` until it is truthy; return it, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = until()
        if found:
            return found
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


SWEEP_ARGS = [
    "data=shapes",
    "data.splits.train.length=16",
    "data.splits.val.length=16",
    "data.splits.test.length=16",
    "data.batch_size=8",
    "data.num_workers=0",
    "model.base_width=8",
    "model.depth=3",
    "trainer.max_epochs=1",
    "test=false",
    "callbacks.rich_progress_bar=null",
]


def test_a_submitit_slurm_sweep_runs_each_job_through_sbatch(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py",
        "-m",
        "hydra/launcher=submitit_slurm",
        f"hydra.launcher.partition={PARTITION}",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.cpus_per_task=1",
        "optimizer.lr=0.01,0.001",
        *SWEEP_ARGS,
        f"hydra.sweep.dir={sweep}",
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # each job ran as a task of one SLURM array job on the node, and completed
    tasks = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    assert len(tasks) == 2, tasks
    for task in tasks:
        # the result file is written just before the job's process exits
        _wait(
            f"job {task} to end",
            lambda t=task: _job_state(slurm_env, t)["JobState"] not in ACTIVE,
            30,
        )
        state = _job_state(slurm_env, task)
        assert state["JobState"] == "COMPLETED", state
        assert state["NodeList"] == slurm_env.node and state["Partition"] == PARTITION
    lrs = set()
    for job in ("0", "1"):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["epochs"] == 1
        assert summary["run_dir"] == str(sweep / job)
        lrs |= {o for o in summary["overrides"] if o.startswith("optimizer.lr=")}
    assert lrs == {"optimizer.lr=0.01", "optimizer.lr=0.001"}

    proc = run_cli("scripts/summarize_sweep.py", str(sweep))
    assert proc.returncode == 0, proc.stderr
    assert "| rank | job | optimizer.lr |" in proc.stdout
    with open(sweep / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["job"] for r in rows) == ["0", "1"]
    assert {r["status"] for r in rows} == {"done"}


# Four training steps per epoch: the signal, sent once the first epoch is checkpointed, lands
# wherever the job is by then, usually inside the second epoch; litseg checkpoints that step and
# the resume replays the uninterrupted run exactly from there (mid-epoch as at an epoch end:
# tests/test_resume.py, tests/test_resume_mid_epoch.py).
PREEMPT_ARGS = [
    *TINY,
    "augment=none",
    "trainer=cpu",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "callbacks.rich_progress_bar=null",
    "callbacks.early_stopping=null",
    "test=false",
    "task_name=preempt",
]
COMPARED = ("val/loss", "val/mIoU", "val/dice", "val/pixel_acc", "train/loss_epoch")


def _batch_script(path: Path, logs: Path) -> Path:
    """The job script a user would write: USR1 90 s before the time limit, requeue allowed,
    ``ckpt_path=auto`` so the first start trains afresh and a requeued start resumes."""
    args = " ".join(shlex.quote(a) for a in [*PREEMPT_ARGS, f"paths.log_dir={logs}"])
    path.write_text(
        "#!/bin/bash\n"
        "#SBATCH --job-name=litseg-preempt\n"
        "#SBATCH --time=10\n"
        "#SBATCH --signal=USR1@90\n"
        "#SBATCH --requeue\n"
        "#SBATCH --cpus-per-task=1\n"
        "#SBATCH --open-mode=append\n"
        f"#SBATCH --output={logs}/slurm-%j.out\n"
        f"#SBATCH --chdir={ROOT}\n"
        f"srun {shlex.quote(sys.executable)} train.py {args} ckpt_path=auto\n"
    )
    return path


def test_a_preempted_job_checkpoints_requeues_and_resumes_to_the_same_end(
    slurm_env: SlurmCluster, tmp_path: Path
) -> None:
    preempted, reference = tmp_path / "preempted", tmp_path / "reference"
    jobs = {}
    for logs in (preempted, reference):
        logs.mkdir()
        script = _batch_script(logs / "job.sh", logs)
        jobs[logs] = slurm_env.run("sbatch", "--parsable", str(script)).strip()
    job = jobs[preempted]
    runs = preempted / "preempt" / "runs"
    try:
        # the signal SLURM sends at --signal=USR1@90, sent now to the job's steps, once the
        # first epoch is checkpointed (so litseg's handler is in place)
        _wait("the first last.ckpt", lambda: list(runs.glob("*/checkpoints/last.ckpt")), 180)
        slurm_env.run("scancel", "--signal=USR1", job)
        # litseg checkpoints and runs `scontrol requeue`; SLURM ends the job's steps and starts
        # the job again once the requeue hold (the cluster's cred_expire + 1 s) has passed. (A
        # test that released the hold at once raced slurmd's revocation of the old credential.)
        _wait("the requeue", lambda: _job_state(slurm_env, job)["Restarts"] == "1", 60)
        for logs, name in ((preempted, "preempted"), (reference, "reference")):
            _wait(
                f"the {name} job to end",
                lambda logs=logs: _job_state(slurm_env, jobs[logs])["JobState"] not in ACTIVE,
                180 + CRED_EXPIRE_S,
            )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_job_report(slurm_env, job, preempted)}") from None
    finally:
        slurm_env.run("scancel", *jobs.values(), check=False)

    state = _job_state(slurm_env, job)
    assert state["JobState"] == "COMPLETED" and state["Restarts"] == "1", (
        f"{state}\n{_job_report(slurm_env, job, preempted)}"
    )
    # The first start's own record of the stop is its summary.json: SLURM ends the job step as
    # the requeue goes through, and srun may drop the step's last lines on their way to
    # slurm-<job>.out (seen in a full `make test`: "litseg: interrupted: SIGUSR1 received ..."
    # missing there).
    # Restarts=1 is litseg's `scontrol requeue`: nothing else requeues the job.
    first, second = sorted(runs.iterdir())
    stopped = json.loads((first / "summary.json").read_text())
    assert stopped["status"] == "interrupted" and 0 < stopped["global_step"] < 12, stopped
    assert stopped["error"].startswith("SIGUSR1 received"), stopped
    resumed = json.loads((second / "summary.json").read_text())
    assert resumed["status"] == "completed" and resumed["epochs"] == 3
    assert resumed["history"][-1]["status"] == "interrupted"
    assert resumed["resumed_from"] == str(first / "checkpoints" / "last.ckpt")
    (ref_run,) = (reference / "preempt" / "runs").iterdir()
    expected = json.loads((ref_run / "summary.json").read_text())
    assert (
        expected["status"] == "completed"
        and _job_state(slurm_env, jobs[reference])["Restarts"] == "0"
    )
    for key in COMPARED:
        assert resumed["metrics"][key] == pytest.approx(expected["metrics"][key], rel=1e-5), key
    assert resumed["best_score"] == pytest.approx(expected["best_score"], rel=1e-5)


def test_cluster_script_refuses_a_folder_in_use(slurm: SlurmCluster) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "slurm_cluster.py"),
            "up",
            "--dir",
            str(slurm.root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"slurm_cluster: error: {slurm.root} exists: run `down` first or choose another --dir"
    )
    assert slurm.node_state() == "idle"  # the running cluster is left alone
