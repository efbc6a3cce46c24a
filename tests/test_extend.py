"""docs/architecture.md's guide, followed literally: a loss, a model and two datasets added
as the page says, with no test edited.

The guide's code blocks that start with ``# file: <path>`` are written into a copy of the
repository (src/, conf/, tests/, train.py), as a newcomer following the page would. The config
and model tests then run on that copy exactly as they are: they try the loss on every task it
declares and refuse it on the others, build and train the model, and build each new data
option. A loss that claims a task it cannot do (written here, not in the guide) fails them.
Finally each "Train with it" command of the guide runs on the copy with ``debug=fdr``, the
datasets on images this test writes in the layouts the guide describes.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import ROOT

GUIDE = ROOT / "docs" / "architecture.md"
# a fenced block whose first line is "# file: <path>": that file, without the marker line
FILE_BLOCK = re.compile(r"^```(\w+)\n# file: (\S+)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
TRAIN_COMMAND = re.compile(r"Train with it: `python train\.py ([^`]+)`")
# the guide's placeholder for a dataset folder: data.root=/path/to/<name>
PLACEHOLDER_ROOT = re.compile(r"data\.root=/path/to/(\w+)")


def guide_files(text: str) -> dict[str, str]:
    """``{path: content}`` of every ``# file:`` block in the guide, in page order."""
    files: dict[str, str] = {}
    for _, path, body in FILE_BLOCK.findall(text):
        assert path not in files, f"docs/architecture.md writes {path} twice"
        files[path] = body
    return files


def train_commands(text: str) -> list[list[str]]:
    """The arguments of every "Train with it: `python train.py ...`" line of the guide."""
    return [command.split() for command in TRAIN_COMMAND.findall(text)]


GUIDE_TEXT = GUIDE.read_text(encoding="utf-8")
FILES = guide_files(GUIDE_TEXT)

# claims every task (the default) but only handles multilabel targets: the unedited tests must
# catch it (a negative control, not part of the guide)
LYING_LOSS = '''"""A loss that declares more tasks than it handles."""

import torch
import torch.nn.functional as F

from litseg.losses.base import SegmentationLoss


class LyingLoss(SegmentationLoss):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
'''
LYING_FILES = {
    "src/litseg/losses/lying.py": LYING_LOSS,
    "conf/loss/lying.yaml": "_target_: litseg.losses.lying.LyingLoss\n"
    "task: ${data.task}\nignore_index: ${data.ignore_index}\n",
}


def options(group: str) -> list[str]:
    """The options of a config group that the guide adds (``conf/<group>/<name>.yaml``)."""
    return [Path(p).stem for p in FILES if p.startswith(f"conf/{group}/")]


def test_guide_adds_each_part_in_one_python_file_and_one_yaml() -> None:
    """The guide's files: new files only, one YAML (and one Python file or none) per part,
    data YAMLs under 15 lines, and every class a YAML names defined by the guide or litseg."""
    assert FILES, "docs/architecture.md has no '# file:' blocks"
    for path in FILES:
        assert not (ROOT / path).exists(), f"the guide's {path} already exists in the repository"
    assert options("loss") and options("model"), sorted(FILES)
    assert len(options("data")) >= 2, "a dataset in an existing layout and one in its own"
    python = {p: body for p, body in FILES.items() if p.endswith(".py")}
    for path, body in python.items():
        compile(body, path, "exec")
    defined = {
        f"{p.removeprefix('src/').removesuffix('.py').replace('/', '.')}.{name}"
        for p, body in python.items()
        for name in re.findall(r"^class (\w+)", body, re.MULTILINE)
    }
    yaml_only = []
    for path, body in FILES.items():
        if not path.endswith(".yaml"):
            continue
        group, name = Path(path).parent.name, Path(path).stem
        config = yaml.safe_load(body)
        target = config.get("_target_") or config["dataset"]["_target_"]
        module = target.rsplit(".", 1)[0]
        if target in defined:
            code = [p for p in python if p.endswith(f"/{module.rsplit('.', 1)[-1]}.py")]
            assert len(code) == 1, f"{path}: names {target}, defined in {code}"
        else:
            assert (ROOT / "src" / f"{module.replace('.', '/')}.py").is_file(), f"{path}: {target}"
            yaml_only.append(f"{group}={name}")
        if group == "data":
            lines = body.count("\n")
            assert lines < 15, f"{path} has {lines} lines; a dataset YAML stays under 15"
    assert any(o.startswith("data=") for o in yaml_only), "no dataset added by a YAML alone"
    commands = {tuple(c) for c in train_commands(GUIDE_TEXT)}
    for group in ("loss", "model", "data"):
        for name in options(group):
            trained = any(f"{group}={name}" in c for c in commands)
            assert trained, f"no 'Train with it' command for {group}={name}"


def outcomes(report: Path) -> dict[str, str]:
    """``{test_configs::name[id]: passed|failed|skipped}`` from a pytest JUnit XML report."""
    found = {}
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        kinds = {child.tag for child in case}
        outcome = "failed" if kinds & {"failure", "error"} else "passed"
        found[f"{module}::{case.get('name')}"] = "skipped" if "skipped" in kinds else outcome
    return found


@pytest.fixture(scope="module")
def guided_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository with the guide's files (and the lying loss) written into it."""
    copy = tmp_path_factory.mktemp("guide") / "litseg"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    for part in ("src", "conf", "tests"):
        shutil.copytree(ROOT / part, copy / part, ignore=skip)
    for name in ("pyproject.toml", "train.py"):
        shutil.copy(ROOT / name, copy)
    for name, text in {**FILES, **LYING_FILES}.items():
        (copy / name).write_text(text)
    return copy


def copy_env(copy: Path) -> dict[str, str]:
    """The environment that makes the copy's litseg the one imported and composed."""
    return {**os.environ, "PYTHONPATH": str(copy / "src"), "LITSEG_ROOT": str(copy)}


@pytest.mark.slow
def test_unedited_tests_check_the_guides_loss_model_and_datasets(
    guided_copy: Path, tmp_path: Path
) -> None:
    copy = guided_copy
    tests_before = {p.name: p.read_bytes() for p in (copy / "tests").glob("*.py")}
    loss, model, data = options("loss")[0], options("model")[0], options("data")
    report = tmp_path / "report.xml"
    select = " or ".join([loss, "lying", model, "no_weights", *data])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
         "tests/test_configs.py", "tests/test_models.py", "-k", select],
        cwd=copy, env=copy_env(copy), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert report.is_file(), result.stdout[-3000:] + result.stderr[-3000:]
    got = outcomes(report)
    log = result.stdout[-4000:]

    expected = {
        # the guide's loss (binary and multilabel): built, trained on each, refused on the other
        f"test_configs::test_option_composes_and_builds[loss={loss}]": "passed",
        f"test_configs::test_loss_trains_on_every_task_it_declares[{loss}-binary]": "passed",
        f"test_configs::test_loss_trains_on_every_task_it_declares[{loss}-multilabel]": "passed",
        f"test_configs::test_loss_refuses_tasks_it_does_not_declare[{loss}-multiclass]": "passed",
        # a loss that declares tasks it cannot do fails the tests on exactly those
        "test_configs::test_loss_trains_on_every_task_it_declares[lying-multilabel]": "passed",
        "test_configs::test_loss_trains_on_every_task_it_declares[lying-binary]": "failed",
        "test_configs::test_loss_trains_on_every_task_it_declares[lying-multiclass]": "failed",
        "test_configs::test_option_composes_and_builds[loss=lying]": "passed",  # builds, no step
        # the model: built as an option, logits at the input size, trained on every task
        f"test_configs::test_option_composes_and_builds[model={model}]": "passed",
        **{
            f"test_models::test_every_model_config_gives_input_size_logits[{model}-{t}]": "passed"
            for t in ("binary", "multiclass")
        },
        **{
            f"test_models::test_every_model_config_trains_every_task[{model}-{t}]": "passed"
            for t in ("binary", "multiclass", "multilabel")
        },
        "test_models::test_no_weights_are_loaded_by_default": "passed",
        # each dataset: composes, resolves, and names the missing root it was given
        **{f"test_configs::test_option_composes_and_builds[data={d}]": "passed" for d in data},
    }
    for name, outcome in expected.items():
        assert got.get(name) == outcome, f"{name}: {got.get(name)} (expected {outcome})\n{log}"
    unexpected_failures = {n for n, o in got.items() if o == "failed"} - {
        n for n, o in expected.items() if o == "failed"
    }
    assert not unexpected_failures, f"{sorted(unexpected_failures)}\n{log}"
    # and no test file was touched
    assert {p.name: p.read_bytes() for p in (copy / "tests").glob("*.py")} == tests_before


def write_sample(image_path: Path, mask_path: Path, seed: int) -> None:
    """A 40x48 RGB image and its index mask: classes 0, 1, 2 in blocks, a row of 255."""
    mask = np.zeros((40, 48), np.uint8)
    mask[10:30, 4 + seed : 20 + seed] = 1
    mask[4:14, 26:44] = 2
    mask[0] = 255
    noise = np.random.default_rng(seed).integers(0, 60, (40, 48, 3))
    image = (noise + np.minimum(mask, 2)[..., None] * 80).astype(np.uint8)
    for path in (image_path, mask_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(image_path)
    Image.fromarray(mask).save(mask_path)


def write_dataset(name: str, root: Path) -> None:
    """Three train and two val images of the guide's dataset ``name`` in its layout."""
    for split, count in (("train", 3), ("val", 2)):
        for i in range(count):
            if name == "roads":  # root/<split>/{images,masks}/<stem>.png
                paths = (root / split / "images" / f"{i}.png", root / split / "masks" / f"{i}.png")
            elif name == "leaves":  # root/<split>/<name>.jpg + <name>_mask.png
                paths = (root / split / f"leaf{i}.jpg", root / split / f"leaf{i}_mask.png")
            else:
                raise AssertionError(f"the guide adds data={name}; teach this test its layout")
            write_sample(*paths, seed=i)


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", train_commands(GUIDE_TEXT), ids=lambda c: " ".join(c).split(" data.root")[0]
)
def test_guide_train_commands_run(guided_copy: Path, tmp_path: Path, command: list[str]) -> None:
    """Each "Train with it" command of the guide, on the copy, with debug=fdr: the run
    completes with the guide's class, and a dataset's metrics carry its YAML's class names."""
    args = []
    for arg in command:
        found = PLACEHOLDER_ROOT.fullmatch(arg)
        if found:
            write_dataset(found.group(1), tmp_path / found.group(1))
            arg = f"data.root={tmp_path / found.group(1)}"
        args.append(arg)
    small = ["debug=fdr", "data.num_workers=0", "data.batch_size=2", "data.eval_batch_size=2"]
    if not any(a.startswith("model=") for a in args):
        small += ["model.base_width=8", "model.depth=3"]
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(guided_copy / "train.py"), *args, *small, f"hydra.run.dir={run}"],
        cwd=guided_copy, env=copy_env(guided_copy), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    for arg in args:
        group, _, name = arg.partition("=")
        if group in ("loss", "model", "data") and f"conf/{group}/{name}.yaml" in FILES:
            guide = yaml.safe_load(FILES[f"conf/{group}/{name}.yaml"])
            node = config[group]["dataset"] if group == "data" else config[group]
            assert node["_target_"] == (guide.get("_target_") or guide["dataset"]["_target_"])
            if group == "data":
                for class_name in guide["class_names"]:
                    assert f"val/IoU_{class_name}" in summary["metrics"], summary["metrics"]
    assert np.isfinite(summary["metrics"]["val/loss"]), summary["metrics"]
