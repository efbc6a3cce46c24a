"""DDP on the CPU (gloo): two processes agree with one, across 'nodes' too, and inside a multirun.

Why the runs can agree: with a per-sample norm (group norm), a per-pixel mean loss (CE), no
augmentation, one batch per epoch and images of one size, the gradient DDP averages over two
processes of 8 images equals the gradient of one process over the 16 images, so the weights
differ only by float rounding. Validation metrics are torchmetrics states reduced across
processes (exact counts), val/loss is the per-process mean averaged across processes (equal
batches: the global mean). Tolerances: 1e-4 relative on val/loss, 2e-3 absolute on the
IoU-type metrics (a handful of the 65 536 validation pixels may flip class by rounding).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from litseg.runtime.launch import job_command_line
from tests.helpers import ROOT, run_cli

COMMON = [
    "data.splits.train.length=16",
    "data.splits.val.length=16",
    "data.eval_batch_size=8",
    "data.num_workers=0",
    "model.base_width=8",
    "model.depth=3",
    "model.norm=group",
    "augment=none",
    "loss=ce",
    "trainer.max_epochs=3",
    "trainer.num_sanity_val_steps=0",
    "trainer.deterministic=true",
    "callbacks.rich_progress_bar=null",
    "callbacks.early_stopping=null",
    "test=false",
]
# one process sees the whole epoch in one batch; each of two processes sees half of it
SINGLE = ["trainer=cpu", "data.batch_size=16"]
PER_PROCESS = ["data.batch_size=8"]
COMPARED = ("val/mIoU", "val/dice", "val/pixel_acc", "val/IoU_background", "val/IoU_circle")


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _assert_agree(metrics: dict[str, float], reference: dict[str, float]) -> None:
    assert metrics["val/loss"] == pytest.approx(reference["val/loss"], rel=1e-4)
    for key in COMPARED:
        assert metrics[key] == pytest.approx(reference[key], abs=2e-3), key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    run_dir = tmp_path_factory.mktemp("single") / "run"
    proc = run_cli("train.py", *COMMON, *SINGLE, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _summary(run_dir)["metrics"]


def test_job_command_line_is_the_job_not_the_sweep() -> None:
    argv = [
        "train.py",
        "-m",
        "--config-name",
        "train",
        "loss=dice,dice_ce",
        "seed=1",
        "ckpt_path=last",
    ]
    job = ["loss=dice_ce", "seed=1", "ckpt_path=last"]
    assert job_command_line(argv, job, {"ckpt_path": "/r/last.ckpt"}) == [
        "train.py",
        "--config-name",
        "train",
        "loss=dice_ce",
        "seed=1",
        "ckpt_path=/r/last.ckpt",
        "hydra.mode=RUN",
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.precision=bf16-mixed"],
        [
            "trainer.accumulate_grad_batches=2",
            "trainer.gradient_clip_algorithm=value",
            "trainer.gradient_clip_val=0.5",
        ],
    ],
    ids=["bf16-mixed", "accumulate-clip"],
)
def test_precision_accumulation_and_clipping_from_config(make_cfg, overrides: list[str]) -> None:
    from litseg.train import train

    cfg = make_cfg("debug=limit", "trainer.max_epochs=1", "test=false", *overrides)
    result = train(cfg)
    trainer = result["objects"]["trainer"]
    assert trainer.accumulate_grad_batches == cfg.trainer.accumulate_grad_batches
    assert trainer.gradient_clip_val == cfg.trainer.gradient_clip_val
    assert trainer.precision == str(cfg.trainer.precision)
    assert 0.0 <= result["metrics"]["val/mIoU"] <= 1.0


def test_ddp_workers_under_submitit_local_are_refused_before_training(make_cfg, tmp_path) -> None:
    from litseg.errors import ConfigError
    from litseg.train import train

    cfg = make_cfg("trainer=ddp_sim", "hydra/launcher=submitit_local", "logger=none")
    with pytest.raises(ConfigError, match="hydra.launcher.tasks_per_node"):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_two_nodes_on_loopback_agree_with_one_process(
    single_process: dict[str, float], tmp_path: Path
) -> None:
    port = _free_port()
    procs = []
    for node in (0, 1):
        env = {
            **os.environ,
            "NODE_RANK": str(node),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "PYTHONUNBUFFERED": "1",
        }
        args = [*COMMON, *PER_PROCESS, "trainer=multi_node", "trainer.accelerator=cpu"]
        args += [
            "trainer.devices=1",
            "trainer.num_nodes=2",
            f"hydra.run.dir={tmp_path / str(node)}",
        ]
        procs.append(
            subprocess.Popen(
                [sys.executable, str(ROOT / "train.py"), *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    # both ranks returned 0: with num_nodes=2 neither gets past the rendezvous alone (Lightning's
    # "Initializing distributed" INFO line is off the console now, see litseg.console)
    summary = _summary(tmp_path / "0")
    _assert_agree(summary["metrics"], single_process)
    # node 1 writes its Hydra files only: no checkpoints, metrics or summary of its own
    written = {p.name for p in (tmp_path / "1").iterdir()}
    assert not written & {"checkpoints", "csv", "summary.json"}, written
    assert Path(summary["best_checkpoint"]).parent == tmp_path / "0" / "checkpoints"


@pytest.mark.slow
def test_ddp_sim_multirun_gives_one_run_dir_per_job(
    single_process: dict[str, float], tmp_path: Path
) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "train.py",
        "-m",
        "trainer=ddp_sim",
        *[o for o in COMMON if not o.startswith("loss=")],
        "loss=ce,dice_ce",
        *PER_PROCESS,
        f"hydra.sweep.dir={sweep}",
        timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    for job, loss in (("0", "loss=ce"), ("1", "loss=dice_ce")):
        summary = _summary(sweep / job)
        assert loss in summary["overrides"]
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        assert loss in overrides
        assert [p.name for p in (sweep / job / "checkpoints").glob("last*.ckpt")] == ["last.ckpt"]
    # the CE job is the single-process run split over two processes
    _assert_agree(_summary(sweep / "0")["metrics"], single_process)
