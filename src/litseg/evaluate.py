"""Evaluation behind ``python eval.py ckpt_path=...``: test a checkpoint, print and log metrics."""

import logging
import re
import time
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from litseg.checkpoint import load_checkpoint, training_config
from litseg.errors import ConfigError
from litseg.train import output_dir
from litseg.utils.instantiate import build_datamodule, build_loggers, build_module, require
from litseg.utils.summary import to_floats, write_summary

log = logging.getLogger(__name__)

# Groups restored from the checkpoint's training config unless the command line names them.
RESTORED_GROUPS = ("data", "augment", "model", "loss", "module")


def _cli_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def merge_training_config(
    cfg: DictConfig, train_cfg: dict[str, Any], overrides: list[str]
) -> DictConfig:
    """Take model, data, ... from the training run, keeping what the command line changed.

    ``data=<name>`` on the command line replaces the training data config; ``data.key=value``
    adjusts it; with neither the training run's data config is used as it was.
    """
    cfg = cfg.copy()
    for group in RESTORED_GROUPS:
        if group not in train_cfg:
            continue
        if any(re.match(rf"^[+~]*{group}=", o) for o in overrides):
            continue
        adjusted = [o.lstrip("+") for o in overrides if re.match(rf"^\+?{group}\.", o)]
        node = OmegaConf.merge(
            OmegaConf.create({group: train_cfg[group]}), OmegaConf.from_dotlist(adjusted)
        )
        with open_dict(cfg):
            cfg[group] = node[group]
    return cfg


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test (or validate) the checkpoint at ``ckpt_path``; return metrics and the run dir."""
    started = time.time()
    ckpt_path = require(cfg, "ckpt_path")
    checkpoint = load_checkpoint(ckpt_path)
    train_cfg = training_config(checkpoint)
    if train_cfg is not None:
        cfg = merge_training_config(cfg, train_cfg, _cli_overrides())
    else:
        log.warning("%s holds no litseg config; using the model and data given here", ckpt_path)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    split = cfg.get("split", "test")
    if split not in ("test", "val"):
        raise ConfigError(f"split={split}; expected test or val")

    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    module.load_state_dict(checkpoint["state_dict"])
    trainer: L.Trainer = instantiate(cfg.trainer, logger=build_loggers(cfg) or False, callbacks=[])
    if split == "test":
        trainer.test(module, datamodule=datamodule)
    else:
        trainer.validate(module, datamodule=datamodule)
    metrics = to_floats(trainer.callback_metrics)
    run_dir = output_dir(cfg)
    result = {
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt_path),
        "split": split,
        "metrics": dict(sorted(metrics.items())),
    }
    if trainer.is_global_zero:
        write_summary(
            run_dir / "summary.json",
            task="eval",
            **result,
            duration_s=round(time.time() - started, 1),
            overrides=_cli_overrides(),
        )
        log.info("Run directory: %s", run_dir)
    return result
