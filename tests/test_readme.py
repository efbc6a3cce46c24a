"""Every shell command in the README runs, in README order, with tiny limits.

The README's ```bash blocks are read as they are (a block added tomorrow is picked up), each
command is given tiny limits (one batch per split, one epoch, tiny shapes models, two Optuna
trials, short finder searches), placeholders become real files (the shared CamVid and
membrane data, a small folder dataset, COCO and LabelMe exports drawn from CamVid,
checkpoints trained here) and everything writes under the test's temporary folder. A command
runs unless :data:`SKIPS` names it with the reason (a GPU, a cluster, a server or a network it
needs); a command of a script without a rule here fails the test, so a new README command gets
a rule or a stated skip.
"""

import os
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ROOT, SHARED_DATA, TINY, run_cli

pytestmark = pytest.mark.slow
CAMVID = SHARED_DATA / "camvid"
MEMBRANE = SHARED_DATA / "isbi2012_membrane"

# (regex on the command, why it does not run here): keep this list short and explicit
SKIPS: list[tuple[str, str]] = [
    (r"^make train\b", "creates .venv and trains the full default run (test_base_install)"),
    (r"^make test\b", "runs the whole suite, this test included"),
    (r"^pip install", "needs the package index (network)"),
    (r"trainer=gpu\b", "needs a GPU"),
    (r"trainer=ddp(\s|$)", "needs GPUs (trainer=ddp_sim runs DDP on CPUs here)"),
    (r"trainer=multi_node\b", "needs several nodes (a cluster)"),
    (r"submitit_slurm|^sbatch\b|slurm_cluster\.py", "needs a SLURM cluster (tests/test_slurm.py)"),
    (r"postgresql", "needs a PostgreSQL server (tests/test_optuna_sweep.py)"),
    (r"instances_train2017", "needs the COCO 2017 download (network)"),
    (r"\bdemo\.py\b", "serves a web page until stopped (tests/test_demo.py drives it)"),
    (r"^srun\b", "runs inside a SLURM job (tests/test_slurm.py)"),
]
# what a train.py command gets appended (only keys the command does not set itself)
LIMITS = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "data.num_workers=0",
]

# what a command that runs Lightning's finders gets appended: short searches
TUNE_LIMITS = ["tune.lr_find.num_training=8", "tune.batch_size_find.max_val=8"]


def readme_commands(text: str) -> list[str]:
    """The commands of the README's bash blocks: continuation lines joined, comments and
    blank lines dropped."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    return commands


def skip_reason(command: str) -> str | None:
    return next((why for pattern, why in SKIPS if re.search(pattern, command)), None)


def _key(arg: str) -> str:
    return arg.split("=", 1)[0].lstrip("+~") if "=" in arg else arg


class Workspace:
    """The real files behind the README's placeholders, made once per test session."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.count = 0
        self.shapes_run: Path | None = None
        self.membrane_run: Path | None = None
        self.wants_root = False  # the command sets data.root: its checkpoint must have one

    def folder_dataset(self) -> Path:
        """root/{images,masks}: 12 generated shape scenes with 3 classes (index masks)."""
        root = self.tmp / "folder_data"
        if root.is_dir():
            return root
        from litseg.data.datasets.shapes import ShapesDataset

        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        data = ShapesDataset(length=12, split="train", image_size=64, task="multiclass")
        for k in range(12):
            image, mask = data.raw(k)  # uint8 HxWx3 and HxW class indices
            mask = np.where(mask == 3, 0, mask).astype(np.uint8)  # three classes: 0, 1, 2
            Image.fromarray(image).save(root / "images" / f"{k:02d}.png")
            Image.fromarray(mask).save(root / "masks" / f"{k:02d}.png")
        return root

    def coco_export(self) -> Path:
        from annotation_trees import scenes
        from test_data_coco import export

        root = self.tmp / "coco_export"
        if not (root / "annotations.json").is_file():
            export(root, "annotations.json", scenes(4), first_image=1)
        return root

    def labelme_folder(self) -> Path:
        from test_data_labelme import make_tree

        root = self.tmp / "labelme"
        if not root.is_dir():
            make_tree(root)
        return root

    def membrane_copy(self) -> Path:
        """The membrane data under another root (symbolic links: nothing is copied)."""
        root = self.tmp / "membrane_copy"
        if not root.is_dir():
            root.mkdir()
            for name in ("image", "label"):
                os.symlink(MEMBRANE / name, root / name)
        return root

    def images(self) -> Path:
        folder = self.tmp / "images"
        if not folder.is_dir():
            folder.mkdir()
            for name in ("0.png", "1.png"):
                shutil.copy(MEMBRANE / "image" / name, folder / name)
        return folder

    def trained(self, kind: str) -> Path:
        """A tiny trained run directory: shapes (a test split) or membrane (a data.root)."""
        cached = self.shapes_run if kind == "shapes" else self.membrane_run
        if cached is not None:
            return cached
        run_dir = self.tmp / f"{kind}_run"
        extra = [*TINY] if kind == "shapes" else [
            "data=membrane", "loss=dice_bce", "augment=none", "model.base_width=4",
            "model.depth=2", "test=false",
        ]  # fmt: skip
        run = run_cli("train.py", *extra, *LIMITS, f"hydra.run.dir={run_dir}")
        assert run.returncode == 0, run.stderr[-3000:]
        if kind == "shapes":
            self.shapes_run = run_dir
        else:
            self.membrane_run = run_dir
        return run_dir

    def run(self, script: str, *args: str) -> None:
        """Run a command the README's command builds on, in the test's log folder."""
        run = run_cli(script, *args, f"paths.log_dir={self.logs}")
        assert run.returncode == 0, run.stderr[-3000:]

    def next_dir(self, name: str) -> Path:
        self.count += 1
        return self.tmp / f"{self.count:02d}_{name}"

    def prepare(self, command: str) -> tuple[str, list[str]]:
        """(script, arguments) that run ``command`` here with tiny limits."""
        words = shlex.split(command)
        if words[0] != "python" or len(words) < 2:
            raise AssertionError(
                f"README command without a rule in tests/test_readme.py: {command}"
            )
        script, args = (
            words[1],
            [w[1:-1] if w.startswith("[") and w.endswith("]") else w for w in words[2:]],
        )
        args = [self.placeholder(a, script) for a in args]
        keys = {_key(a) for a in args}
        if script == "train.py":
            if (
                not any(a.startswith(("data=", "experiment=")) for a in args)
                or "data=shapes" in args
            ):
                args += [o for o in TINY if _key(o) not in keys and not o.startswith("model.")]
                if not any(a.startswith(("model=", "experiment=")) for a in args):
                    args += [o for o in TINY if o.startswith("model.") and _key(o) not in keys]
            args += [o for o in LIMITS if _key(o) not in keys]
            if "hparams_search=optuna" in args and "hydra.sweeper.n_trials" not in keys:
                args.append("hydra.sweeper.n_trials=2")  # not the search's 20
            if any(a.startswith("tune.") for a in args):
                args += [o for o in TUNE_LIMITS if _key(o) not in keys]
            # run folders where the README says (logs/<task>/runs/<time>), under the test's
            # folder: ckpt_path=last and summarize_sweep.py find them there
            args.append(f"paths.log_dir={self.logs}")
            if any(a.startswith("experiment=plan_") for a in args):
                args.append(f"hydra.searchpath=[file://{self.tmp / 'conf'}]")
        elif script == "eval.py":
            args += [o for o in ("data.num_workers=0", "report.worst_k=2") if _key(o) not in keys]
            args += ["trainer.limit_test_batches=1", "trainer.limit_val_batches=1"]
            args.append(f"hydra.run.dir={self.next_dir('eval')}")
        elif script == "predict.py":
            args.append("progress=false")
        elif script == "scripts/export.py":
            args.append("parity.real_count=1")
        elif script == "scripts/check_dataset.py":
            args = ["--limit", "8", *args]
        elif script == "scripts/plan.py":
            if "out" not in keys:
                args.append(f"out={self.tmp / 'conf' / 'experiment' / 'plan_data.yaml'}")
            args.append("steps=20")
        elif script not in ("scripts/summarize_sweep.py", "scripts/convert_annotations.py"):
            raise AssertionError(
                f"README command without a rule in tests/test_readme.py: {command}"
            )
        return script, args

    def placeholder(self, arg: str, script: str) -> str:
        """One argument with its placeholder made real."""
        key, _, value = arg.partition("=")
        if key == "ckpt_path" and script != "train.py":
            return f"ckpt_path={self.trained('membrane' if self.wants_root else 'shapes')}"
        if key == "data.root":
            value = {
                "/path/to/CamVid": str(CAMVID),
                "/path/to/isbi2012_membrane": str(MEMBRANE),
                "/path/to/data": str(self.folder_dataset()),
                "/other/copy": str(self.membrane_copy()),
                "/path/to/export": str(self.coco_export()),
                "/path/to/folder": str(self.labelme_folder()),
            }.get(value, value)
            return f"{key}={value}"
        if key == "data.labels":
            from test_data_labelme import LABELS

            return f"data.labels=[{','.join(LABELS)}]"  # the labels the export holds
        if key == "input":
            return (
                f"input={self.images() if value.endswith('/images') else self.images() / '0.png'}"
            )
        if key == "output":
            return f"output={self.next_dir(Path(value.rstrip('/')).name or 'out')}"
        if key == "trainer.max_epochs":
            return "trainer.max_epochs=1"
        if key == "hydra.sweeper.n_trials":
            return "hydra.sweeper.n_trials=2"
        if key == "hydra.sweeper.storage" and value.startswith("sqlite:"):
            return f"hydra.sweeper.storage=sqlite:///{self.tmp / 'optuna.db'}"
        if arg.startswith("logs/train/multiruns/"):
            sweeps = self.logs / "train" / "multiruns"
            if not sweeps.is_dir():  # this command run alone: a sweep of its own first
                self.run("train.py", "-m", "loss=dice,dice_ce", *TINY, *LIMITS)
            return str(sorted(sweeps.iterdir())[0])
        if arg in ("ckpt_path=last", "ckpt_path=auto") and script == "train.py":
            if not (self.logs / "train" / "runs").is_dir():  # run alone: a run to resume
                self.run("train.py", *TINY, *LIMITS)
            return arg
        if arg == "/path/to/masks":
            return str(self.next_dir("masks"))
        return arg


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    if not (CAMVID.is_dir() and MEMBRANE.is_dir()):
        pytest.skip(
            f"the README's commands use the shared CamVid and membrane data ({SHARED_DATA})"
        )
    return Workspace(tmp_path_factory.mktemp("readme"))


COMMANDS = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_commands() -> None:
    scripts = {shlex.split(c)[1] for c in COMMANDS if c.startswith("python ")}
    assert {"train.py", "eval.py", "predict.py", "scripts/export.py"} <= scripts


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i:02d}" for i in range(len(COMMANDS))])
def test_readme_command(command: str, workspace: Workspace) -> None:
    reason = skip_reason(command)
    if reason:
        pytest.skip(reason)
    workspace.wants_root = "data.root=" in command
    script, args = workspace.prepare(command)
    run = run_cli(script, *args, timeout=600)
    assert run.returncode == 0, f"{command}\n-> {script} {' '.join(args)}\n{run.stderr[-3000:]}"
