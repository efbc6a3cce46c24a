"""tune.lr / tune.batch_size: Lightning's Tuner on the real Trainer before fitting, and where
the finders are refused."""

import json
from pathlib import Path

import pytest
import torch

from litseg.errors import ConfigError
from litseg.train import train
from tests.helpers import TINY, run_cli

# a small train split, a short run; the finders' own trials kept short too
QUICK = [
    "data.splits.train.length=32",
    "data.batch_size=4",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "test=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.early_stopping=null",
]


def test_finders_apply_print_plot_and_record(make_cfg, tmp_path: Path, caplog) -> None:
    cfg = make_cfg(
        *QUICK,
        "scheduler=onecycle",
        "module.scheduler_interval=step",
        "tune.lr=true",
        "tune.batch_size=true",
        "tune.lr_find.num_training=24",
        "tune.batch_size_find.max_val=16",
        "tune.batch_size_find.steps_per_trial=1",
    )
    with caplog.at_level("INFO", logger="litseg"):
        result = train(cfg)
    tuning = result["tuning"]

    # batch size: doubled from init_val 2 while steps ran, up to max_val; applied to the loader
    assert tuning["batch_size"]["before"] == 4
    assert tuning["batch_size"]["found"] == 16
    datamodule, trainer = result["objects"]["datamodule"], result["objects"]["trainer"]
    assert datamodule.batch_size == 16 and cfg.data.batch_size == 16
    assert trainer.train_dataloader.batch_size == 16

    # learning rate: the suggestion replaces optimizer.lr, and one-cycle peaks at it
    lr = tuning["lr"]["found"]
    assert lr is not None and lr != pytest.approx(3.0e-3)
    assert tuning["lr"]["before"] == pytest.approx(3.0e-3)
    assert tuning["lr"]["steps"] == 24
    assert cfg.optimizer.lr == pytest.approx(lr)
    group = trainer.optimizers[0].param_groups[0]
    assert group["max_lr"] == pytest.approx(lr)  # OneCycleLR's peak follows optimizer.lr
    png = tmp_path / "lr_find.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # one printed line each, the summary and the checkpoint's stored config
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("tune.batch_size: data.batch_size 4 -> 16") for m in lines), lines
    assert any(m.startswith("tune.lr: optimizer.lr 0.003 -> ") for m in lines), lines
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tuning"]["lr"]["found"] == pytest.approx(lr)
    assert summary["tuning"]["lr"]["plot"] == "lr_find.png"
    assert summary["tuning"]["batch_size"]["found"] == 16
    ckpt = torch.load(result["last_checkpoint"], map_location="cpu", weights_only=True)
    stored = ckpt["litseg_config"]
    assert stored["optimizer"]["lr"] == pytest.approx(lr)
    assert stored["scheduler"]["max_lr"] == pytest.approx(lr)
    assert stored["data"]["batch_size"] == 16
    # the finders' temporary checkpoints are gone
    assert not list(tmp_path.glob(".lr_find_*")) and not list(tmp_path.glob(".scale_batch_*"))


def test_lr_finder_alone_keeps_the_batch_size(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg(*QUICK, "tune.lr=true", "tune.lr_find.num_training=16")
    result = train(cfg)
    assert set(result["tuning"]) == {"lr"}
    assert result["objects"]["datamodule"].batch_size == 4
    lr = result["tuning"]["lr"]["found"]
    assert result["objects"]["trainer"].optimizers[0].param_groups[0]["initial_lr"] == (
        pytest.approx(lr)
    )  # cosine starts from the suggestion


def test_fast_dev_run_skips_the_finders_and_says_so(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("debug=fdr", "tune.lr=true", "tune.batch_size=true")
    result = train(cfg)
    assert result["tuning"]["lr"]["found"] is None
    assert result["tuning"]["batch_size"]["found"] is None
    assert cfg.optimizer.lr == pytest.approx(3.0e-3) and cfg.data.batch_size == 8


def test_no_finder_no_tuning_entry(make_cfg, tmp_path: Path) -> None:
    result = train(make_cfg("debug=fdr"))
    assert "tuning" not in result
    assert "tuning" not in json.loads((tmp_path / "summary.json").read_text())


def test_refused_with_several_processes(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("trainer=ddp_sim", "tune.lr=true")
    with pytest.raises(ConfigError, match=r"tune.lr=true needs one process on one device"):
        train(cfg)
    assert not (tmp_path / "summary.json").exists()


def test_refused_on_a_resumed_run(make_cfg, tmp_path: Path) -> None:
    first = train(make_cfg(*QUICK, "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"))
    cfg = make_cfg(*QUICK, "tune.batch_size=true", f"ckpt_path={first['last_checkpoint']}")
    with pytest.raises(ConfigError, match=r"tune.batch_size=true with ckpt_path"):
        train(cfg)


def test_refused_when_not_a_bool(make_cfg) -> None:
    with pytest.raises(ConfigError, match=r"tune.lr='yes': expected true or false"):
        train(make_cfg("debug=fdr", "tune.lr=yes"))


def test_refused_in_a_multirun_that_sweeps_the_value(tmp_path: Path) -> None:
    args = [
        "-m",
        *TINY,
        "optimizer.lr=0.001,0.01",
        "tune.lr=true",
        "debug=fdr",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    done = run_cli("train.py", *args)
    assert done.returncode != 0
    assert "tune.lr=true in a multirun that sweeps optimizer.lr" in done.stderr, done.stderr


def test_a_multirun_over_another_key_may_tune(tmp_path: Path) -> None:
    args = [
        "-m",
        *TINY,
        "seed=1,2",
        "tune.lr=true",
        "debug=fdr",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    done = run_cli("train.py", *args)
    assert done.returncode == 0, done.stderr
    summaries = sorted((tmp_path / "sweep").glob("*/summary.json"))
    assert len(summaries) == 2
    for path in summaries:  # fast_dev_run: recorded as skipped
        assert json.loads(path.read_text())["tuning"]["lr"]["found"] is None


@pytest.mark.slow
def test_refused_in_an_optuna_search_of_the_lr(tmp_path: Path) -> None:
    args = [
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        *TINY,
        "tune.lr=true",
        "debug=fdr",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    done = run_cli("train.py", *args)
    assert done.returncode != 0
    assert "tune.lr=true in a multirun that sweeps optimizer.lr" in done.stderr, done.stderr
