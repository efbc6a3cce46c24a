"""The builders: turn the composed config into objects, the one place that reads config
groups (datamodule, module, callbacks, loggers)."""

import copy
import logging
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning import Callback, LightningDataModule
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf, open_dict

from litseg.data.class_frequency import (
    MEDIAN_FREQUENCY,
    median_frequency_weights,
    training_masks,
)
from litseg.data.datamodule import check_data_keys
from litseg.errors import ConfigError
from litseg.losses import check_loss_fits_task
from litseg.module import SegmentationModule
from litseg.tasks import check_num_classes, check_task
from litseg.utils.wandb_mode import wandb_should_be_offline

log = logging.getLogger(__name__)
# logger.wandb.offline: decide online/offline when the logger is built (see settle_wandb)
WANDB_AUTO = "auto"


def group_choice(group: str) -> str | None:
    """The option chosen for a config group (e.g. ``dice_ce`` for loss), when under Hydra."""
    if HydraConfig.initialized():
        return HydraConfig.get().runtime.choices.get(group)
    return None


def require(cfg: DictConfig, key: str) -> Any:
    """``cfg[key]``, or a ConfigError naming the key when it is missing or empty."""
    value = OmegaConf.select(cfg, key, default=None)
    if value is None:
        raise ConfigError(
            f"config key '{key}' is missing; set it on the command line "
            f"(e.g. {key}=...) or in its config group"
        )
    return value


def build_datamodule(cfg: DictConfig) -> LightningDataModule:
    """The data module with its train and eval augmentation pipelines; a data key nothing
    reads (a misspelling) is refused first, naming it."""
    check_data_keys(cfg)
    check_task(require(cfg, "data.task"))
    check_num_classes(cfg.data.task, require(cfg, "data.num_classes"))
    augment = cfg.get("augment") or {}
    return instantiate(
        cfg.data,
        train_transform=instantiate(augment["train"]) if "train" in augment else None,
        eval_transform=instantiate(augment["eval"]) if "eval" in augment else None,
    )


def _loss_nodes_with(node: Any, key: str, value: str) -> list[DictConfig]:
    """Every config node under ``node`` (itself included) where ``node[key] == value``."""
    found = []
    if isinstance(node, DictConfig):
        if node.get(key) == value:
            found.append(node)
        for child in node.values():
            found += _loss_nodes_with(child, key, value)
    return found


def resolve_class_weights(cfg: DictConfig) -> DictConfig:
    """The loss config with ``class_weights: median_frequency`` replaced by computed weights.

    The weights come from the training split's masks (untransformed), once per run.
    """
    loss_cfg = require(cfg, "loss")
    if not _loss_nodes_with(loss_cfg, "class_weights", MEDIAN_FREQUENCY):
        return loss_cfg
    if cfg.data.task != "multiclass":
        raise ConfigError(
            f"loss.class_weights=median_frequency needs data.task=multiclass (got "
            f"{cfg.data.task}); for binary/multilabel use loss.pos_weight or a list"
        )
    cfg = copy.deepcopy(cfg)
    datamodule = instantiate(cfg.data)
    weights = median_frequency_weights(
        training_masks(datamodule), cfg.data.num_classes, cfg.data.get("ignore_index")
    )
    log.info("median-frequency class weights: %s", ", ".join(f"{w:.3f}" for w in weights))
    with open_dict(cfg):
        for node in _loss_nodes_with(cfg.loss, "class_weights", MEDIAN_FREQUENCY):
            node.class_weights = weights
    return cfg.loss


def build_module(cfg: DictConfig) -> SegmentationModule:
    """Model + loss + optimizer (+ scheduler) in a SegmentationModule; checks loss vs task.

    ``class_weights: median_frequency`` anywhere in the loss config is computed here from the
    training set.
    """
    loss = instantiate(resolve_class_weights(cfg))
    check_loss_fits_task(loss, cfg.data.task, group_choice("loss"))
    net = instantiate(require(cfg, "model"))
    scheduler_cfg = cfg.get("scheduler")
    return instantiate(
        require(cfg, "module"),
        net=net,
        loss=loss,
        optimizer=instantiate(require(cfg, "optimizer")),
        scheduler=instantiate(scheduler_cfg) if scheduler_cfg else None,
    )


def _instantiate_all(group: DictConfig | None, kind: str) -> list[Any]:
    objects = []
    for name, node in (group or {}).items():
        if node is None:
            continue
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"{kind}.{name} has no _target_; expected a {kind} config")
        objects.append(instantiate(node))
    return objects


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """Every callback under ``callbacks`` (a null entry switches one off)."""
    return _instantiate_all(cfg.get("callbacks"), "callbacks")


def settle_wandb(cfg: DictConfig) -> None:
    """Decide ``logger.wandb.offline: auto`` now, in ``cfg``: offline without an API key or
    an answering server (:func:`litseg.utils.wandb_mode.wandb_should_be_offline`).

    Done when the logger is about to be built, never while the config resolves, so composing
    a config opens no network connection. Offline W&B cannot upload checkpoints, so
    ``log_model`` is then switched off with a warning. Idempotent.
    """
    wandb_cfg = OmegaConf.select(cfg, "logger.wandb")
    if wandb_cfg is None:
        return
    offline = wandb_cfg.get("offline")
    if offline not in (True, False, WANDB_AUTO):
        raise ConfigError(
            f"logger.wandb.offline={offline}: expected true, false or {WANDB_AUTO} "
            "(online when an API key is set and the W&B server answers)"
        )
    with open_dict(cfg):
        if offline == WANDB_AUTO:
            wandb_cfg.offline = wandb_should_be_offline()
        if wandb_cfg.offline and wandb_cfg.get("log_model"):
            log.warning(
                "logger.wandb.log_model=%s ignored: W&B is offline; the checkpoints stay in "
                "the run directory",
                wandb_cfg.log_model,
            )
            wandb_cfg.log_model = False


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Every logger under ``logger`` (a null entry switches one off); W&B's online or
    offline mode is decided here (:func:`settle_wandb`)."""
    settle_wandb(cfg)
    return _instantiate_all(cfg.get("logger"), "logger")
