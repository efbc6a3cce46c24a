"""scripts/check_dataset.py lists every problem of a dataset with its file, exits non-zero on
any, reports the stored mask values with what each is read as, refuses masks that are mostly
ignored or miss a class, and reports frequencies, mean/std and class weights for good data."""

import importlib.util
import re

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from test_data_folder import label_map, make_tree
from test_mask_encoding import membrane_as_folder, needs_membrane

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("check_dataset", ROOT / "scripts/check_dataset.py")
check_dataset = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_dataset)


def run(*overrides: str) -> int:
    GlobalHydra.instance().clear()
    return check_dataset.main(["data.num_workers=0", *overrides])


def test_good_data_reports_statistics_and_weights(tmp_path, capsys) -> None:
    root = make_tree(tmp_path / "d", {"train": 3, "val": 2})
    assert run("data=folder", f"data.root={root}", "data.num_classes=3") == 0
    out = capsys.readouterr().out
    assert "pairs found: 3, read: 3" in out and "pairs found: 2, read: 2" in out
    # the red channel is label * 100 and labels are near-uniform over {0, 1, 2}
    share = out.split("[train]")[1].split("class pixel share: ")[1].split("\n")[0]
    freqs = [float(f) for f in re.findall(r"\d=([0-9.]+)", share)]
    assert len(freqs) == 3
    assert sum(freqs) == pytest.approx(1.0, abs=1e-3) and min(freqs) > 0.25
    labels = np.concatenate([label_map(k).ravel() for k in range(3)])
    red_mean = (labels * 100 / 255).mean()
    assert f"mean: [{red_mean:.4f}, 0.0000, 0.0000]" in out
    assert "suggested class weights (median frequency, train): [" in out
    assert "OK: no problems found" in out


def test_every_problem_is_listed_with_its_file(tmp_path, capsys) -> None:
    root = make_tree(tmp_path / "d", {"train": 4, "val": 2})
    masks = root / "train" / "masks"
    data = (root / "train" / "images" / "train_0.png").read_bytes()
    (root / "train" / "images" / "train_0.png").write_bytes(data[:100])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(masks / "train_1.png")
    Image.fromarray(np.full((24, 32), 5, np.uint8)).save(masks / "train_2.png")
    (root / "val" / "masks" / "val_1.png").unlink()
    assert run("data=folder", f"data.root={root}", "data.num_classes=3") == 1
    out = capsys.readouterr().out
    assert "pairs found: 4, read: 1" in out
    assert "train_0.png is unreadable" in out
    assert "train_1.png is 8x8 (WxH) but its image" in out
    assert "train_2.png has label value(s) [5] outside [0, 3) or ignore_index 255" in out
    assert "1 image(s) in" in out and "have no mask" in out and "val_1.png" in out
    assert "FAILED" in out


def test_unusable_config_exits_2(capsys) -> None:
    assert run("data=folder", "data.num_classes=3") == 2
    assert "data.root" in capsys.readouterr().err


@needs_membrane
def test_0_255_masks_with_255_ignored_are_refused_naming_the_value(tmp_path, capsys) -> None:
    """The old failure mode: 255 read as the ignore index, class 1 never seen; it used to say
    "no problems found" and suggest a class weight of 0.0000."""
    root = membrane_as_folder(tmp_path / "membrane")
    assert run("data=folder", f"data.root={root}", "data.num_classes=2") == 1
    captured = capsys.readouterr()
    train = captured.out.split("[train]")[1].split("[val]")[0]
    assert "0: 21.8" in train and "in 24 of 24 images -> class 0" in train
    assert "255: 78.1" in train and "-> ignored (data.ignore_index=255)" in train
    assert "OK: no problems found" not in captured.out
    assert "suggested class weights" not in captured.out
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("check_dataset: refused: 78.")
    assert "stored value 255 is read as data.ignore_index=255" in lines[0]
    assert "data.mask_values={0: 0, 255: 1}" in lines[0]


@needs_membrane
def test_binary_0_255_masks_pass_and_report_their_values(tmp_path, capsys) -> None:
    root = membrane_as_folder(tmp_path / "membrane")
    assert run("data=folder", f"data.root={root}", "data.task=binary") == 0
    out = capsys.readouterr().out
    train = out.split("[train]")[1].split("[val]")[0]
    assert "0: 21.8" in train and "-> class 0 (background)" in train
    assert "255: 78.1" in train and "in 24 of 24 images -> class 1 (foreground)" in train
    assert "ignored pixels: 0 (0.0 %)" in train
    assert "OK: no problems found" in out


def test_a_class_that_never_appears_is_refused(tmp_path, capsys) -> None:
    root = make_tree(tmp_path / "d", {"train": 3, "val": 2})
    for path in (root / "train" / "masks").iterdir():  # class 2 only in val
        mask = np.asarray(Image.open(path))
        Image.fromarray(np.where(mask == 2, 1, mask).astype(np.uint8)).save(path)
    assert run("data=folder", f"data.root={root}", "data.num_classes=3") == 1
    captured = capsys.readouterr()
    assert "-> class 2" in captured.out.split("[val]")[1]
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "class 2 never appears in the train split's masks" in err[0]
    assert "stored values found: 0, 1, 2" in err[0] and "data.mask_values=" in err[0]
