"""Every option of every config group composes, resolves and builds its objects."""

from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from litseg.builders import build_callbacks, build_datamodule, build_loggers, build_module
from litseg.errors import ConfigError, LitsegError
from litseg.tasks import TASKS
from tests.helpers import CONF, TINY

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
# overrides an option needs to build outside a run (a loss's task comes from LOSS_TASKS)
NEEDS = {
    # sized by the Trainer in a run; this test builds the module without one
    ("scheduler", "onecycle"): ["scheduler.total_steps=10"],
}


def declared_tasks(node: object) -> tuple[str, ...]:
    """The tasks a loss config fits, read from the classes it names without building them.

    Its ``_target_``'s ``supported_tasks`` (all tasks when the class declares none), narrowed
    by every loss config nested in it (a weighted sum fits what all its terms fit). A target
    that does not import counts as fitting every task, so the build tests name the error.
    """
    fits = set(TASKS)
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            try:
                declared = getattr(get_class(node["_target_"]), "supported_tasks", TASKS)
            except Exception:  # noqa: BLE001 - reported by the tests that build it
                declared = TASKS
            fits &= set(declared)
        children = node.values()
    else:
        children = node if isinstance(node, list) else []
    for child in children:
        fits &= set(declared_tasks(child))
    return tuple(t for t in TASKS if t in fits)


# every conf/loss option with the tasks its classes declare: a new loss is tried on each of
# its tasks, and refused on the others, with no test to edit
LOSS_TASKS = {
    p.stem: declared_tasks(OmegaConf.to_container(OmegaConf.load(p)))
    for p in sorted((CONF / "loss").glob("*.yaml"))
}
LOSS_FITS = [(o, t) for o, tasks in LOSS_TASKS.items() for t in tasks]
LOSS_MISFITS = [(o, t) for o, tasks in LOSS_TASKS.items() for t in TASKS if t not in tasks]


def option_needs(group: str, option: str) -> list[str]:
    """Overrides that let ``group=option`` build: a loss gets the first task it declares."""
    if group == "loss" and LOSS_TASKS.get(option):
        return [f"data.task={LOSS_TASKS[option][0]}"]
    return NEEDS.get((group, option), [])


# groups of the predict entry config rather than of train.yaml
PREDICT_GROUPS = {"inference"}
PREDICT_REQUIRED = ["ckpt_path=model.ckpt", "input=images", "output=masks"]
# datasets read from ../shared/datasets (LITSEG_DATA_DIR); the others need a local root
LOCAL_DATA = {"shapes", "camvid", "membrane"}
# overrides a data option needs to compose; options whose class names are read from an
# annotation file under data.root when the config resolves
DATA_NEEDS = {"folder": ["data.num_classes=3"], "labelme": ["data.labels=[background,thing]"]}
CLASSES_FROM_FILES = {"coco"}
SMALL_MODEL = [o for o in TINY if o.startswith("model.")]
# recipes on an smp model, which has no U-Net width or depth to shrink
SMP_EXPERIMENTS = {
    p.stem for p in (CONF / "experiment").glob("*.yaml") if "override /model: smp" in p.read_text()
}
SMALL_LOADER = [
    "data.batch_size=2",
    "data.num_workers=0",
    "data.splits.train.length=4",
    "data.splits.val.length=2",
]


def test_every_group_has_options() -> None:
    for group in (
        "model",
        "loss",
        "data",
        "augment",
        "optimizer",
        "scheduler",
        "trainer",
        "logger",
        "callbacks",
        "paths",
        "hydra",
        "debug",
        "experiment",
        "module",
    ):
        assert group in GROUPS, group
    trainers = {name for g, name in OPTIONS if g == "trainer"}
    assert {"default", "cpu", "gpu", "ddp", "ddp_sim"} <= trainers
    assert {"csv", "wandb", "tensorboard", "many"} <= {n for g, n in OPTIONS if g == "logger"}
    assert {"fdr", "overfit", "limit"} <= {n for g, n in OPTIONS if g == "debug"}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_builds(make_cfg, group: str, option: str) -> None:
    if group == "hparams_search":
        pytest.skip("sweeper configs are exercised by the sweep tests")
    override = f"{group}={option}"
    if group in PREDICT_GROUPS:
        cfg = make_cfg(override, *PREDICT_REQUIRED, config_name="predict", tiny=False)
        OmegaConf.resolve(cfg)
        return
    if group == "data":
        small = SMALL_LOADER if option in LOCAL_DATA else ["data.root=/nonexistent/litseg-data"]
        extra = DATA_NEEDS.get(option, [])
        cfg = make_cfg(override, *small, *SMALL_MODEL, *extra, tiny=False)
        if option in CLASSES_FROM_FILES:
            with pytest.raises(InterpolationResolutionError, match="/nonexistent/litseg-data"):
                OmegaConf.resolve(cfg)
            return
        OmegaConf.resolve(cfg)
        if option not in LOCAL_DATA:
            # offline with no local copy: a clear error naming the root, not a crash
            with pytest.raises(LitsegError, match="/nonexistent/litseg-data"):
                build_datamodule(cfg).setup("fit")
            return
    elif group == "experiment" and option in SMP_EXPERIMENTS:
        # an smp model has no U-Net width or depth to shrink
        cfg = make_cfg(override, *[o for o in TINY if not o.startswith("model.")], tiny=False)
    else:
        cfg = make_cfg(override, *option_needs(group, option))
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert cfg.data.num_classes >= 1
    if group in ("data", "augment"):
        dm = build_datamodule(cfg)
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        assert batch["image"].shape[1] == cfg.data.in_channels
    elif group in ("model", "loss", "optimizer", "scheduler", "module"):
        module = build_module(cfg)
        module.configure_optimizers()
    elif group == "callbacks":
        build_callbacks(cfg)
    elif group == "logger":
        for logger in build_loggers(cfg):
            assert Path(logger.save_dir).is_relative_to(cfg.paths.output_dir)
    elif group == "trainer" and option in ("default", "cpu", "ddp_sim"):
        trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
        assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize(
    ("config_name", "required"),
    [
        ("train", []),
        ("eval", ["ckpt_path=x.ckpt"]),
        ("predict", PREDICT_REQUIRED),
        ("export", ["ckpt_path=x.ckpt", "output=model.onnx"]),
    ],
)
def test_entry_configs_compose(make_cfg, config_name: str, required: list[str]) -> None:
    if not (CONF / f"{config_name}.yaml").is_file():
        pytest.skip(f"conf/{config_name}.yaml not present")
    cfg = make_cfg(*required, config_name=config_name, tiny=False)
    OmegaConf.resolve(cfg)


def test_num_classes_lives_once_in_data(make_cfg) -> None:
    cfg = make_cfg("data.task=binary", "loss=dice_bce")
    assert cfg.model.num_classes == cfg.data.num_classes == 1
    assert list(cfg.data.class_names) == ["shape"]
    cfg = make_cfg()
    assert cfg.model.num_classes == cfg.module.num_classes == cfg.data.num_classes == 4
    text = "\n".join(p.read_text() for p in (CONF / "model").glob("*.yaml"))
    assert "num_classes: ${data.num_classes}" in text


def test_every_loss_declares_a_known_task() -> None:
    none = [o for o, tasks in LOSS_TASKS.items() if not tasks]
    assert not none, f"conf/loss/{none[0]}.yaml: supported_tasks names none of {TASKS}"
    assert LOSS_TASKS["ce"] == ("multiclass",) and LOSS_TASKS["bce"] == ("binary", "multilabel")
    assert LOSS_TASKS["dice_bce"] == ("binary", "multilabel")  # a sum fits what its terms fit


@pytest.mark.parametrize(("option", "task"), LOSS_FITS, ids=[f"{o}-{t}" for o, t in LOSS_FITS])
def test_loss_trains_on_every_task_it_declares(make_cfg, option: str, task: str) -> None:
    """A real batch of that task through the model and the loss: finite, with gradients."""
    cfg = make_cfg(f"loss={option}", f"data.task={task}")
    module = build_module(cfg)  # checks the built loss's supported_tasks against data.task
    if task == "multilabel":  # the shapes data has no multilabel masks: one channel per class
        cfg.data.task = "multiclass"
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    target = batch["mask"]
    if task == "multilabel":
        target = torch.nn.functional.one_hot(target, cfg.data.num_classes).permute(0, 3, 1, 2)
    value = module.loss_fn(module(batch["image"]), target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value), (option, task, value)
    grads = [p.grad for p in module.net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    ("option", "task"), LOSS_MISFITS, ids=[f"{o}-{t}" for o, t in LOSS_MISFITS]
)
def test_loss_refuses_tasks_it_does_not_declare(make_cfg, option: str, task: str) -> None:
    cfg = make_cfg(f"loss={option}", f"data.task={task}")
    with pytest.raises(ConfigError, match=f"loss={option} does not fit data.task={task}"):
        build_module(cfg)
