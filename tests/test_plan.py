"""scripts/plan.py: a fingerprint of the train split, a recipe with one reason per choice,
written as an experiment that trains; the same data gives the same YAML."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from litseg import planning
from litseg.builders import build_datamodule
from litseg.data.class_frequency import median_frequency_weights
from litseg.data.datasets.shapes import ShapesDataset
from litseg.errors import ConfigError
from tests.helpers import ROOT, run_cli

spec = importlib.util.spec_from_file_location("plan_script", ROOT / "scripts/plan.py")
plan_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plan_script)

DATA = Path(os.environ["LITSEG_DATA_DIR"])
CAMVID, MEMBRANE = DATA / "camvid", DATA / "isbi2012_membrane"
needs_camvid = pytest.mark.skipif(not CAMVID.is_dir(), reason=f"no CamVid in {DATA}")
needs_membrane = pytest.mark.skipif(not MEMBRANE.is_dir(), reason=f"no membrane data in {DATA}")
CHOICES = (
    "normalisation",
    "loss",
    "crop",
    "precision",
    "batch",
    "optimizer",
    "scheduler",
    "epochs",
    "augment",
    "monitor",
    "trainer",
)


def plan(tmp_path: Path, name: str, *overrides: str):
    """Run plan.py writing <tmp>/conf/experiment/<name>.yaml; (process, path)."""
    path = tmp_path / "conf" / "experiment" / f"{name}.yaml"
    return run_cli("scripts/plan.py", *overrides, f"out={path}", timeout=900), path


def train_planned(tmp_path: Path, name: str):
    """python train.py experiment=<name> debug=fdr, the experiment found via --config-dir."""
    return run_cli(
        "train.py",
        "--config-dir",
        str(tmp_path / "conf"),
        f"experiment={name}",
        "debug=fdr",
        f"paths.log_dir={tmp_path / 'logs'}",
        timeout=600,
    )


def plan_in_process(*args: str) -> int:
    """scripts/plan.py's main() in this process (quicker than a new one for refusals)."""
    GlobalHydra.instance().clear()
    return plan_script.main(list(args))


def check_printed(stdout: str, images: int) -> None:
    assert "Fingerprint (train split):" in stdout
    assert f"train images: {images}, channels:" in stdout
    choices = stdout.split("Choices:")[1]
    for what in CHOICES:
        assert f"\n  {what}: " in choices, what
    assert "Wrote " in stdout and "Train: python train.py --config-dir" in stdout


def test_shapes_plan_matches_the_data_and_trains(tmp_path: Path) -> None:
    done, path = plan(tmp_path, "plan_shapes", "data=shapes", "data.splits.train.length=48")
    assert done.returncode == 0, done.stderr
    check_printed(done.stdout, 48)
    recipe = yaml.safe_load(path.read_text())

    # the statistics, computed here independently from the same generated images
    dataset = ShapesDataset(split="train", length=48)
    images, masks = zip(*(dataset.raw(i) for i in range(48)), strict=True)
    pixels = np.concatenate([im.reshape(-1, 3) for im in images]) / 255.0
    assert recipe["data"]["mean"] == pytest.approx(pixels.mean(0), abs=1e-4)
    assert recipe["data"]["std"] == pytest.approx(pixels.std(0), abs=1e-4)
    share = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=4) / pixels.shape[0]
    imbalance = share.max() / share.min()
    defaults = {k.split("/")[1]: v for d in recipe["defaults"] for k, v in d.items()}
    if imbalance > planning.IMBALANCE:  # generated shapes: background ~80 %, triangles ~3 %
        assert defaults["loss"] == "ce"
        expected = median_frequency_weights(masks, 4, None)
        assert recipe["loss"]["class_weights"] == pytest.approx(expected, abs=1e-3)
    else:
        assert defaults["loss"] == "dice_ce" and "loss" not in recipe
    assert defaults["data"] == "shapes" and defaults["augment"] == "strong"  # 48 < 100 images
    assert recipe["data"]["crop_size"] == 64  # the image side, a multiple of 2**4
    batch = recipe["data"]["batch_size"]
    assert batch & (batch - 1) == 0 and batch <= 8
    per_epoch = 48 // batch
    epochs = recipe["trainer"]["max_epochs"]
    every = recipe["trainer"]["check_val_every_n_epoch"]
    # the step budget reached, in whole validation intervals
    assert epochs * per_epoch >= planning.RULES["steps"]["cpu"] > (epochs - every) * per_epoch
    assert epochs % every == 0
    assert recipe["data"]["splits"]["train"]["length"] == 48  # carried from the command line

    done = train_planned(tmp_path, "plan_shapes")
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@needs_membrane
def test_membrane_plan_is_deterministic_and_trains(tmp_path: Path) -> None:
    first, path = plan(tmp_path, "plan_membrane", "data=membrane")
    assert first.returncode == 0, first.stderr
    check_printed(first.stdout, 24)  # fold 4 of 5 holds out 6 of the 30 slices
    again, second = plan(tmp_path, "plan_membrane_again", "data=membrane")
    assert again.returncode == 0, again.stderr
    # the same data gives the same plan, byte for byte (task_name aside: the file's name)
    assert path.read_text().replace("plan_membrane_again", "plan_membrane") == (
        second.read_text().replace("plan_membrane_again", "plan_membrane")
    )
    recipe = yaml.safe_load(path.read_text())
    defaults = {k.split("/")[1]: v for d in recipe["defaults"] for k, v in d.items()}
    # choices reached from the data: Dice + BCE (membrane is ~22 % of the pixels), strong
    # augmentation (24 images), 256 px crops
    assert defaults["loss"] == "dice_bce" and defaults["augment"] == "strong"
    assert recipe["data"]["crop_size"] == 256
    assert recipe["monitor"]["metric"] == "val/dice"
    assert recipe["data"]["mean"][0] == pytest.approx(0.49, abs=0.01)

    done = train_planned(tmp_path, "plan_membrane")
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@needs_camvid
def test_camvid_plan_weighs_rare_classes_and_trains(tmp_path: Path) -> None:
    done, path = plan(tmp_path, "plan_camvid", "data=camvid")
    assert done.returncode == 0, done.stderr
    check_printed(done.stdout, 367)
    assert "ignored pixels: 4.0 %" in done.stdout  # void, left out of the class shares
    recipe = yaml.safe_load(path.read_text())
    defaults = {k.split("/")[1]: v for d in recipe["defaults"] for k, v in d.items()}
    assert defaults["loss"] == "ce" and defaults["augment"] == "basic"
    weights = recipe["loss"]["class_weights"]
    assert len(weights) == 11
    names = [
        "sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
        "pedestrian", "bicyclist",
    ]  # fmt: skip
    # road is the most frequent class, bicyclist the rarest: least and most weight
    assert min(weights) == weights[names.index("road")]
    assert max(weights) == weights[names.index("bicyclist")]
    assert recipe["data"]["crop_size"] == 256  # 360 px side, capped for a CPU

    done = train_planned(tmp_path, "plan_camvid")
    assert done.returncode == 0, done.stderr


def binary_tree(root: Path, side: int = 64, square: int = 10) -> Path:
    """A data=folder tree of 0/255 masks whose foreground is a small square (rare pixels)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 2)):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
            mask = np.zeros((side, side), np.uint8)
            y, x = rng.integers(0, side - square, 2)
            mask[y : y + square, x : x + square] = 255
            image[mask > 0] = 255
            Image.fromarray(image).save(root / split / "images" / f"{split}_{i}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{split}_{i}.png")
    return root


def test_rare_binary_foreground_gets_a_pos_weight_that_trains(tmp_path: Path) -> None:
    root = binary_tree(tmp_path / "spots")
    done, path = plan(
        tmp_path, "plan_spots", "data=folder", f"data.root={root}", "data.task=binary"
    )
    assert done.returncode == 0, done.stderr
    recipe = yaml.safe_load(path.read_text())
    share = 100 / 64**2
    assert recipe["loss"]["terms"]["bce"]["pos_weight"] == pytest.approx((1 - share) / share, 0.01)
    assert recipe["data"]["root"] == str(root)
    assert recipe["data"]["batch_size"] == 4  # at most half of the 8 images
    assert "regions >= 16 px" in done.stdout and "8 regions: 100 / 100 / 100" in done.stdout
    done = train_planned(tmp_path, "plan_spots")
    assert done.returncode == 0, done.stderr


def test_misread_masks_are_refused_like_check_dataset(tmp_path: Path, capsys) -> None:
    root = binary_tree(tmp_path / "spots")
    path = tmp_path / "plan_x.yaml"
    # 0/255 masks read as two-class index masks: 255 is the ignore index, class 1 never appears
    args = ["data=folder", f"data.root={root}", "data.num_classes=2", f"out={path}"]
    assert plan_in_process(*args) == 1
    err = capsys.readouterr().err
    assert err.startswith("plan: refused: class 1") and "data.mask_values" in err
    assert len(err.strip().splitlines()) == 1
    assert not path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["optimizer.lr=0.1,0.2"], "plan.py takes one value per key, not a sweep"),
        (["experiment=membrane_cpu"], "plan.py writes a whole experiment"),
        (["steps=0"], "steps=0: expected an integer >= 1"),
        (["data.batch_size=-4"], "data.batch_size=-4: expected an integer >= 1"),
        (["data.nonexistent=3"], "Could not override 'data.nonexistent'"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    path = tmp_path / "plan_x.yaml"
    assert plan_in_process("data=shapes", *args, f"out={path}") == 2
    err = capsys.readouterr().err
    assert err.startswith("plan: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not path.exists()


def test_an_existing_file_is_never_overwritten(tmp_path: Path, capsys) -> None:
    path = tmp_path / "conf" / "experiment" / "plan_x.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("mine\n")
    assert plan_in_process("data=shapes", f"out={path}") == 2
    assert capsys.readouterr().err.strip() == (
        f"plan: error: {path} exists; plan.py never overwrites a file: remove it or pass "
        "another out=..."
    )
    assert path.read_text() == "mine\n"
    # the default location takes the next free name instead
    assert planning.default_path(tmp_path / "conf", "plan_x").name == "plan_x_2.yaml"


def test_values_given_on_the_command_line_win(make_cfg) -> None:
    cfg = make_cfg("data=shapes", "data.splits.train.length=16")
    fp = planning.fingerprint(build_datamodule(cfg), "shapes")
    choices = {"data": "shapes", "model": "unet"}
    given = {"augment": "none"}
    values = {"data.batch_size": 2, "data.crop_size": 32}
    recipe, measured = planning.plan_recipe(cfg, fp, choices, given, values, steps=40)
    assert measured is None  # no trial steps for a batch size the user chose
    by_what = {c.what: c for c in recipe}
    assert by_what["batch"].values == {"data.batch_size": 2}
    assert by_what["crop"].values == {"data.crop_size": 32}
    assert "given on the command line: data.crop_size=32" in by_what["crop"].reason
    assert "given on the command line: augment=none" in by_what["augment"].reason
    assert by_what["epochs"].values["trainer.max_epochs"] == 5  # 40 steps / (16 // 2)
    text = planning.render(fp, recipe, choices, given, values, "plan_shapes")
    recipe_yaml = yaml.safe_load(text)
    assert {"override /augment": "none"} in recipe_yaml["defaults"]
    assert recipe_yaml["data"]["batch_size"] == 2 and recipe_yaml["data"]["crop_size"] == 32


def test_trial_steps_measure_memory_and_back_off(make_cfg) -> None:
    cfg = make_cfg("data=shapes")
    net = planning.instantiate(cfg.model)
    factory = planning.instantiate(cfg.optimizer)
    used = [
        planning.trial_step(net, factory, b, 64, 3, "multiclass", 4, "cpu", "32-true")
        for b in (1, 2, 4)
    ]
    assert used[0] < used[1] < used[2]
    # deterministic: the same step needs the same bytes
    assert planning.trial_step(net, factory, 2, 64, 3, "multiclass", 4, "cpu", "32-true") == used[1]
    choice = planning.choose_batch_size(cfg, 64, 3, "cpu", "32-true", 100, budget=used[2] - 1)
    assert choice.batch == 2 and choice.trials[-1] == (4, used[2])
    with pytest.raises(ConfigError, match="one 64x64 image does not fit the cpu memory budget"):
        planning.choose_batch_size(cfg, 64, 3, "cpu", "32-true", 100, budget=used[0] - 1)
