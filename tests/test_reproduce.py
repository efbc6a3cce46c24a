"""scripts/reproduce.py (every recipe through the CLI, rows made by litseg.results into a
results JSON) and scripts/parity_camvid.py (a plain-PyTorch reference of experiment=camvid_cpu
beside litseg).

The trainings here are smoke-sized: one epoch of two small batches on ../shared/datasets.
"""

import json
from pathlib import Path

import albumentations as A
import pytest
import torch
from hydra.utils import instantiate

from litseg import results
from litseg.metrics import build_metrics
from scripts import parity_camvid, reproduce, results_table
from tests.helpers import SHARED_DATA, compose_config, run_cli

HAVE_DATA = (SHARED_DATA / "camvid").is_dir() and (SHARED_DATA / "isbi2012_membrane").is_dir()
needs_data = pytest.mark.skipif(
    not HAVE_DATA, reason=f"CamVid and ISBI 2012 membrane data not found under {SHARED_DATA}"
)


def _row(experiment: str, hardware: str, value: float) -> dict:
    return {
        "experiment": experiment,
        "data": "d",
        "model": "m",
        "loss": "l",
        "metric": "val mIoU",
        "value": value,
        "also": "",
        "epochs": "1",
        "wall": "1 s",
        "hardware": hardware,
    }


@pytest.mark.slow
@needs_data
def test_smoke_trains_two_recipes_and_updates_only_their_rows(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    cpu = results.hardware_name("cpu")
    stale_key = "`experiment=membrane_cpu`, smoke test"
    seeded = {
        "results": [_row("someone else's", "2-core CPU", 0.5), _row(stale_key, cpu, -1.0)],
        "published": [{"what": "w", "value": "v", "source": "s"}],
    }
    out.write_text(json.dumps(seeded))
    proc = run_cli(
        "scripts/reproduce.py",
        "--smoke",
        "--only",
        "membrane_cpu",
        "camvid_cpu",
        "--out",
        str(out),
        "--runs-dir",
        str(tmp_path / "runs"),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["published"] == seeded["published"]
    rows = data["results"]
    assert [r["experiment"] for r in rows] == [
        "someone else's",
        stale_key,  # replaced in place
        "`experiment=camvid_cpu`, smoke test",
    ]
    assert rows[0] == seeded["results"][0]
    for row, name in zip(rows[1:], ["membrane_cpu", "camvid_cpu"], strict=True):
        assert row["recipe"] == name and row["smoke"] is True and row["device"] == "cpu"
        assert row["hardware"] == cpu and row["hardware"].split("-core ")[0].isdigit()
        assert row["command"].startswith(f"python train.py experiment={name} data.root=")
        assert "trainer.max_epochs=1" in row["command"]
        assert "module.boundary_metric=false" in row["command"]
        assert 0.0 <= row["value"] <= 1.0 and row["wall_s"] > 0
        assert row["epochs"] == "1" and row["epochs_run"] == 1
        assert "val/loss" in row["val_metrics"]
        assert (tmp_path / "runs" / name / "learning_curve.png").is_file()
    assert rows[1]["monitor"] == "val/dice" and rows[1]["metric"] == "best val Dice (membrane)"
    assert rows[2]["monitor"] == "val/mIoU"
    assert set(rows[2]["per_class_iou"]) == set(parity_camvid.CLASS_NAMES)
    assert "320 px" not in rows[2]["model"] and "64 px crops" in rows[2]["model"]
    # the rows render into the README table
    assert "`experiment=camvid_cpu`, smoke test" in results_table.render(data)


def test_gpu_commands_compose_and_fit_the_budget(tmp_path: Path, capsys) -> None:
    assert reproduce.main(["--dry-run", "--device", "cuda", "--runs-dir", str(tmp_path)]) == 0
    commands = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert len(commands) == len(results.RECIPES) == 6
    assert sum(r.gpu_minutes for r in results.RECIPES.values()) <= 40
    for command in commands:
        args = command.split()
        assert args[:2] == ["python", "train.py"]
        assert {"trainer=gpu", "trainer.precision=bf16-mixed"} <= set(args)
        overrides = [a for a in args[2:] if not a.startswith("hydra.")]
        cfg = compose_config("train", overrides, tmp_path / "x", hydra_config=False)
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"
        assert cfg.trainer.max_time.startswith("00:00:")
        assert cfg.data.num_workers == 10
        # the recipe's own optimisation is kept: batch size and epochs untouched
        recipe = compose_config("train", overrides[:2], tmp_path / "y", hydra_config=False)
        assert cfg.data.batch_size == recipe.data.batch_size
        assert cfg.trainer.max_epochs == recipe.trainer.max_epochs


def test_overrides_keep_one_value_per_key() -> None:
    merged = reproduce.overrides_for("camvid_cpu", "cuda", True, True, ["data.num_workers=3"])
    assert [o for o in merged if o.startswith("data.num_workers=")] == ["data.num_workers=3"]
    assert len({o.split("=")[0].lstrip("+") for o in merged}) == len(merged)


def test_update_results_replaces_by_experiment_and_hardware(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    results.update_results(out, [_row("a", "GPU", 0.1), _row("a", "CPU", 0.2)])
    results.update_results(out, [_row("a", "GPU", 0.3), _row("b", "GPU", 0.4)])
    rows = json.loads(out.read_text())["results"]
    assert [(r["experiment"], r["hardware"], r["value"]) for r in rows] == [
        ("a", "GPU", 0.3),
        ("a", "CPU", 0.2),
        ("b", "GPU", 0.4),
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


def test_parity_reference_follows_the_camvid_cpu_recipe(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=camvid_cpu"], tmp_path, hydra_config=False)
    recipe = parity_camvid.RECIPE
    assert recipe.epochs == cfg.trainer.max_epochs
    assert recipe.crop == cfg.data.crop_size
    assert (recipe.batch_size, recipe.eval_batch_size) == (
        cfg.data.batch_size,
        cfg.data.eval_batch_size,
    )
    assert recipe.workers == cfg.data.num_workers
    assert (recipe.lr, recipe.weight_decay) == (cfg.optimizer.lr, cfg.optimizer.weight_decay)
    assert cfg.scheduler.max_lr == recipe.lr and cfg.module.scheduler_interval == "step"
    assert (recipe.pct_start, recipe.div_factor, recipe.final_div_factor) == (
        cfg.scheduler.pct_start,
        cfg.scheduler.div_factor,
        cfg.scheduler.final_div_factor,
    )
    assert cfg.loss._target_.endswith("CrossEntropyLoss")
    weights = cfg.loss.class_weights
    assert recipe.class_weights == (None if weights is None else tuple(weights))
    assert cfg.loss.label_smoothing == 0.0 and cfg.loss.ignore_index == parity_camvid.VOID
    assert (cfg.model.arch, cfg.model.encoder, cfg.model.pretrained) == ("Unet", "resnet18", False)
    # the hand-written train pipeline is litseg's, transform by transform
    ours = A.to_dict(parity_camvid.train_pipeline(recipe.crop))["transform"]["transforms"]
    theirs = A.to_dict(instantiate(cfg.augment.train).compose)["transform"]["transforms"]
    assert ours == theirs


def test_parity_miou_is_litsegs() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 12, (3, 40, 50), generator=generator)  # 11 = void
    target[target == 7] = 3  # fence absent from the truth
    pred = torch.randint(0, 11, (3, 40, 50), generator=generator)
    pred[pred == 7] = 2  # ... and from the prediction: NaN, left out of the mean
    pred[pred == 9] = 0  # pedestrian never predicted: IoU 0, counted
    cm = parity_camvid.confusion_matrix(pred, target)
    ours = parity_camvid.iou_from_confusion(cm)
    metrics = build_metrics("multiclass", 11, parity_camvid.VOID)
    metrics.update(pred, target)
    theirs = metrics.compute()["IoU"].double()
    assert torch.isnan(ours[7]) and torch.isnan(theirs[7]) and ours[9] == 0
    torch.testing.assert_close(ours, theirs, equal_nan=True, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.nanmean(), theirs.nanmean(), rtol=0, atol=1e-6)


def test_parity_forward_pads_like_litsegs_smp_model() -> None:
    from litseg.models.smp_models import SMPModel

    torch.manual_seed(0)
    model = SMPModel("Unet", "resnet18", 3, 11).eval()
    x = torch.randn(1, 3, 72, 100)
    with torch.no_grad():
        torch.testing.assert_close(parity_camvid.padded_forward(model.net, x), model(x))


@pytest.mark.slow
@needs_data
def test_parity_tiny_run_gives_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "parity.json"
    proc = run_cli(
        "scripts/parity_camvid.py",
        *("--epochs", "1", "--limit-train-batches", "2", "--limit-val-batches", "1"),
        *("--crop", "64", "--seeds", "0", "--workers", "0"),
        *("--json", str(out), "--runs-dir", str(tmp_path / "runs")),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| seed | reference val mIoU | litseg val mIoU | litseg - reference |" in proc.stdout
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["seed"] == 0 and run["reference"]["steps"] == 2
    for side in ("reference", "litseg"):
        assert 0.0 <= run[side]["mIoU"] <= 1.0
        assert set(run[side]["per_class_iou"]) == set(parity_camvid.CLASS_NAMES)
    command = run["litseg"]["command"]
    assert "experiment=camvid_cpu" in command and "seed=0" in command
    assert "trainer.max_epochs=1" in command and "trainer.limit_train_batches=2" in command
    summary = json.loads((tmp_path / "runs" / "litseg_seed0" / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["metrics"]["val/mIoU"] == run["litseg"]["mIoU"]
    assert set(result["summary"]) == {"reference", "litseg"}


def test_row_from_a_summary_with_null_metrics(tmp_path: Path) -> None:
    """Summaries write NaN (a class in neither prediction nor truth) as null: rows keep None."""
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(
        "model:\n  _target_: litseg.models.unet.UNet\n  base_width: 32\n  depth: 4\n"
        "data:\n  crop_size: 256\n  batch_size: 4\ntrainer:\n  max_epochs: 200\n"
        "  max_time: '00:00:05:00'\n"
    )
    summary = {
        "monitor": "val/dice",
        "best_score": 0.81234,
        "epochs": 150,
        "metrics": {"val/dice": 0.8, "val/mIoU": None, "val/IoU_membrane": None},
        "host": {"cuda": "NVIDIA H100 80GB HBM3"},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    command = ["python", "train.py", "experiment=membrane_unet"]
    row = results.make_row(
        "membrane_unet", tmp_path, command, 300.4, "cuda", False, "Time limit reached. ..."
    )
    assert row["value"] == 0.8123 and row["hardware"] == "NVIDIA H100 80GB HBM3"
    assert row["epochs"] == "150 of 200 (time cap)" and row["wall"] == "5 min 0 s"
    assert row["per_class_iou"] == {"membrane": None}
    assert row["also"] == "last val: Dice 0.800, IoU n/a, pixel acc n/a"
    assert row["model"] == "U-Net, width 32, depth 4; 256 px crops, batch 4"
    json.dumps(row, allow_nan=False)  # strict JSON
