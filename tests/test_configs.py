"""Every option of every config group composes, resolves and builds its objects."""

from pathlib import Path

import pytest
from conftest import CONF
from hydra.utils import instantiate
from omegaconf import OmegaConf

from litseg.utils.instantiate import build_callbacks, build_datamodule, build_loggers, build_module

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml"))]
# options that only fit certain data: compose them with a task they fit
NEEDS = {("loss", "bce"): ["data.task=binary"], ("loss", "dice_bce"): ["data.task=binary"]}


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
    override = f"{group}={option}" if group not in ("hydra",) else f"hydra={option}"
    cfg = make_cfg(override, *NEEDS.get((group, option), []))
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


def test_num_classes_lives_once_in_data(make_cfg) -> None:
    cfg = make_cfg("data.task=binary", "loss=dice_bce")
    assert cfg.model.num_classes == cfg.data.num_classes == 1
    assert list(cfg.data.class_names) == ["shape"]
    cfg = make_cfg()
    assert cfg.model.num_classes == cfg.module.num_classes == cfg.data.num_classes == 4
    text = "\n".join(p.read_text() for p in (CONF / "model").glob("*.yaml"))
    assert "num_classes: ${data.num_classes}" in text
