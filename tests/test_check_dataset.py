"""scripts/check_dataset.py lists every problem of a dataset with its file, exits non-zero on
any, and reports frequencies, mean/std and class weights for good data."""

import importlib.util
import re

import numpy as np
import pytest
from conftest import ROOT
from hydra.core.global_hydra import GlobalHydra
from PIL import Image
from test_data_folder import label_map, make_tree

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
