"""A new loss or model is one Python file and one YAML: the tests find and check it unedited.

A copy of the repository's src/, conf/ and tests/ gets a loss and a model written as a newcomer
would write them (one module under src/litseg/, one YAML under conf/), and the config and model
tests run on that copy exactly as they are. They try the loss on every task it declares and
refuse it on the others, and build and train the model; a loss that claims a task it cannot do
fails them.
"""

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import ROOT

NEW_LOSS = '''"""Mean absolute error between sigmoid probabilities and targets."""

import torch

from litseg.losses.base import SegmentationLoss


class AbsoluteErrorLoss(SegmentationLoss):
    """mean |sigmoid(logits) - target| over the pixels that are not ignore_index."""

    supported_tasks = ("binary", "multilabel")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task == "binary":
            target = target.unsqueeze(1)
        valid = torch.ones_like(logits)
        if self.ignore_index is not None:
            valid = (target != self.ignore_index).to(logits.dtype).expand_as(logits)
        error = (logits.sigmoid() - target.to(logits.dtype)).abs() * valid
        return error.sum() / valid.sum().clamp_min(1.0)
'''

# claims every task (the default) but only handles multilabel targets
LYING_LOSS = '''"""A loss that declares more tasks than it handles."""

import torch
import torch.nn.functional as F

from litseg.losses.base import SegmentationLoss


class LyingLoss(SegmentationLoss):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
'''

NEW_MODEL = '''"""A two-layer fully convolutional net: logits at the input's size."""

import torch
from torch import nn


class PixelNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, num_classes, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)
'''


def yaml(target: str, *lines: str) -> str:
    return "\n".join([f"_target_: {target}", *lines, ""])


LOSS_KEYS = ("task: ${data.task}", "ignore_index: ${data.ignore_index}")
MODEL_KEYS = ("in_channels: ${data.in_channels}", "num_classes: ${data.num_classes}", "width: 8")
NEW_FILES = {
    "src/litseg/losses/absolute.py": NEW_LOSS,
    "conf/loss/absolute.yaml": yaml("litseg.losses.absolute.AbsoluteErrorLoss", *LOSS_KEYS),
    "src/litseg/losses/lying.py": LYING_LOSS,
    "conf/loss/lying.yaml": yaml("litseg.losses.lying.LyingLoss", *LOSS_KEYS),
    "src/litseg/models/pixelnet.py": NEW_MODEL,
    "conf/model/pixelnet.yaml": yaml("litseg.models.pixelnet.PixelNet", *MODEL_KEYS),
}


def outcomes(report: Path) -> dict[str, str]:
    """``{test_configs::name[id]: passed|failed|skipped}`` from a pytest JUnit XML report."""
    found = {}
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "passed"
        found[f"{module}::{case.get('name')}"] = "skipped" if "skipped" in kinds else outcome
    return found


@pytest.mark.slow
def test_new_loss_and_model_need_no_test_edit(tmp_path: Path) -> None:
    copy = tmp_path / "litseg"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    for part in ("src", "conf", "tests"):
        shutil.copytree(ROOT / part, copy / part, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", copy)
    tests_before = {p.name: p.read_bytes() for p in (copy / "tests").glob("*.py")}
    for name, text in NEW_FILES.items():
        (copy / name).write_text(text)

    env = {
        **os.environ,
        "PYTHONPATH": str(copy / "src"),  # the copy's litseg, ahead of the installed one
        "LITSEG_ROOT": str(copy),
    }
    report = tmp_path / "report.xml"
    select = "absolute or lying or pixelnet or no_weights"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         "tests/test_configs.py", "tests/test_models.py", "-k", select],
        cwd=copy, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert report.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    got = outcomes(report)
    log = result.stdout[-4000:]

    expected = {
        # the loss: built as an option, trained on each task it declares, refused on the other
        "test_configs::test_option_composes_and_builds[loss=absolute]": "passed",
        "test_configs::test_loss_trains_on_every_task_it_declares[absolute-binary]": "passed",
        "test_configs::test_loss_trains_on_every_task_it_declares[absolute-multilabel]": "passed",
        "test_configs::test_loss_refuses_tasks_it_does_not_declare[absolute-multiclass]": "passed",
        # a loss that declares tasks it cannot do fails the tests on exactly those
        "test_configs::test_loss_trains_on_every_task_it_declares[lying-multilabel]": "passed",
        "test_configs::test_loss_trains_on_every_task_it_declares[lying-binary]": "failed",
        "test_configs::test_loss_trains_on_every_task_it_declares[lying-multiclass]": "failed",
        "test_configs::test_option_composes_and_builds[loss=lying]": "passed",  # builds, no step
        # the model: built as an option, logits at the input size, trained on every task
        "test_configs::test_option_composes_and_builds[model=pixelnet]": "passed",
        **{
            f"test_models::test_every_model_config_gives_input_size_logits[pixelnet-{t}]": "passed"
            for t in ("binary", "multiclass")
        },
        **{
            f"test_models::test_every_model_config_trains_every_task[pixelnet-{t}]": "passed"
            for t in ("binary", "multiclass", "multilabel")
        },
        "test_models::test_no_weights_are_loaded_by_default": "passed",
    }
    for name, outcome in expected.items():
        assert got.get(name) == outcome, f"{name}: {got.get(name)} (expected {outcome})\n{log}"
    unexpected_failures = {n for n, o in got.items() if o == "failed"} - {
        n for n, o in expected.items() if o == "failed"
    }
    assert not unexpected_failures, f"{sorted(unexpected_failures)}\n{log}"
    # and no test file was touched
    assert {p.name: p.read_bytes() for p in (copy / "tests").glob("*.py")} == tests_before
