"""``tune.lr=true`` / ``tune.batch_size=true``: Lightning's Tuner before fitting.

The batch-size finder runs first (the learning rate depends on it). What they find is applied
to the config, the data module and the module's optimizer and scheduler factories (the
one-cycle schedule's ``max_lr`` interpolates ``optimizer.lr``, so it follows), printed as one
line each, and returned for summary.json; the loss-vs-lr curve lands in ``lr_find.png``.
Where a finder cannot work (several processes, a resumed run, a sweep that varies the value)
it is refused with one ConfigError line before anything runs.
"""

import io
import logging
import sys
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.strategies import ParallelStrategy
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig, OmegaConf, open_dict

from litseg.errors import ConfigError
from litseg.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)
# finder -> the config key it sets
TUNED_KEYS = {"batch_size": "data.batch_size", "lr": "optimizer.lr"}
PLOT = "lr_find.png"


def wanted(cfg: DictConfig) -> list[str]:
    """The finders switched on (``tune.batch_size`` before ``tune.lr``); each must be a bool."""
    out = []
    for name in ("batch_size", "lr"):
        value = OmegaConf.select(cfg, f"tune.{name}", default=False)
        if not isinstance(value, bool):
            raise ConfigError(f"tune.{name}={value!r}: expected true or false")
        if value:
            out.append(name)
    return out


def swept_keys() -> set[str]:
    """Keys a running multirun varies: the sweeper's ``params`` (Optuna, the basic sweeper's
    config form) and command-line sweeps (``optimizer.lr=1e-3,1e-2``, ``range(...)``)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return set()
    keys = set(OmegaConf.select(HydraConfig.get(), "sweeper.params", default=None) or {})
    args = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException:
        parsed = []
    keys.update(o.key_or_group for o in parsed if o.is_sweep_override())
    return keys


def check_finders(cfg: DictConfig, trainer: L.Trainer, ckpt_path: str | None) -> list[str]:
    """The finders to run, or a ConfigError naming why one cannot."""
    names = wanted(cfg)
    if not names:
        return []
    first = f"tune.{names[0]}=true"
    if trainer.world_size > 1 or isinstance(trainer.strategy, ParallelStrategy):
        raise ConfigError(
            f"{first} needs one process on one device; trainer.devices="
            f"{cfg.trainer.get('devices')}, trainer.num_nodes={cfg.trainer.get('num_nodes')}, "
            f"trainer.strategy={cfg.trainer.get('strategy')} runs {trainer.world_size}: tune on "
            "one device (trainer.devices=1 trainer.strategy=auto), then pass the value found"
        )
    if ckpt_path:
        raise ConfigError(
            f"{first} with ckpt_path: a resumed run continues with its checkpoint's optimizer "
            "state and batches; tune in a fresh run"
        )
    if not cfg.get("train", True):
        raise ConfigError(f"{first} with train=false: the finders tune a training run")
    swept = swept_keys()
    for name in names:
        if TUNED_KEYS[name] in swept:
            raise ConfigError(
                f"tune.{name}=true in a multirun that sweeps {TUNED_KEYS[name]}: the finder "
                f"would replace the value each job is given; sweep it or tune it, not both"
            )
    return names


def _set(cfg: DictConfig, resolved: dict[str, Any], key: str, value: Any) -> None:
    """``key`` = ``value`` in the config and in its resolved copy (what checkpoints store)."""
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, merge=False)
    _refresh(cfg, resolved, key.split(".")[0])


def _refresh(cfg: DictConfig, resolved: dict[str, Any], group: str) -> None:
    """The resolved copy of one top-level group, again (after a value it interpolates moved)."""
    node = OmegaConf.select(cfg, group)
    resolved[group] = OmegaConf.to_container(node, resolve=True) if node is not None else None


def _save_plot(finder: Any, path: Path) -> None:
    """The loss-vs-lr curve with the suggestion marked, written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = finder.plot(suggest=True)
    fig.axes[0].set_title("lr_find: loss vs learning rate (red: suggestion)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def _find_batch_size(cfg: DictConfig, tuner: Tuner, module: Any, datamodule: Any) -> dict:
    args = OmegaConf.to_container(cfg.tune.get("batch_size_find") or {}, resolve=True)
    before = datamodule.batch_size
    found = tuner.scale_batch_size(module, datamodule=datamodule, **args)
    return {"before": before, "found": found, "settings": args}


def _find_lr(
    cfg: DictConfig, trainer: L.Trainer, module: Any, datamodule: Any, run_dir: Path
) -> dict:
    tuner = Tuner(trainer)
    args = OmegaConf.to_container(cfg.tune.get("lr_find") or {}, resolve=True)
    num_training = args.pop("num_training", 100)
    # the range test takes num_training steps however few batches an epoch has (an epoch has
    # at least one, so num_training epochs are enough; finite, so a one-cycle schedule built
    # meanwhile has a length), without validation; restored after
    loop, every = trainer.fit_loop, trainer.check_val_every_n_epoch
    max_epochs = loop.max_epochs
    loop.max_epochs = max(max_epochs if max_epochs and max_epochs > 0 else 1, num_training)
    trainer.check_val_every_n_epoch = sys.maxsize
    try:
        finder = tuner.lr_find(
            module, datamodule=datamodule, num_training=num_training, update_attr=False, **args
        )
    finally:
        loop.max_epochs, trainer.check_val_every_n_epoch = max_epochs, every
    record: dict[str, Any] = {
        "before": float(cfg.optimizer.lr),
        "settings": {**args, "num_training": num_training},
    }
    if finder is None:
        return {**record, "found": None}
    record["found"] = finder.suggestion()
    record["steps"] = len(finder.results.get("lr", []))
    if record["steps"]:
        _save_plot(finder, run_dir / PLOT)
        record["plot"] = PLOT
    return record


def run_finders(
    cfg: DictConfig,
    trainer: L.Trainer,
    module: Any,
    datamodule: Any,
    run_dir: Path,
    resolved: dict[str, Any],
    ckpt_path: str | None = None,
) -> dict[str, Any] | None:
    """Run the finders ``tune.*`` asks for and apply what they find; None when none is on.

    Returns ``{"batch_size": {...}, "lr": {...}}`` with the value before, the value found (None:
    skipped under ``trainer.fast_dev_run``, or no suggestion from too few steps, and the value
    stays) and the finder's settings. ``resolved`` (the config checkpoints store) is updated.
    """
    names = check_finders(cfg, trainer, ckpt_path)
    if not names:
        return None
    tuner = Tuner(trainer)
    record: dict[str, Any] = {}
    if "batch_size" in names:
        found = _find_batch_size(cfg, tuner, module, datamodule)
        if found["found"] is not None:
            datamodule.batch_size = int(found["found"])
            _set(cfg, resolved, "data.batch_size", int(found["found"]))
        record["batch_size"] = found
        log.info("tune.batch_size: %s", _line(found, "data.batch_size"))
    if "lr" in names:
        found = _find_lr(cfg, trainer, module, datamodule, run_dir)
        if found["found"] is not None:
            _set(cfg, resolved, "optimizer.lr", float(found["found"]))
            # the factories the module builds its optimizer and scheduler from, rebuilt so
            # interpolations of optimizer.lr (scheduler=onecycle's max_lr) follow
            module.optimizer_factory = instantiate(cfg.optimizer)
            if cfg.get("scheduler"):
                module.scheduler_factory = instantiate(cfg.scheduler)
                _refresh(cfg, resolved, "scheduler")
        record["lr"] = found
        where = f", curve in {run_dir / PLOT}" if found.get("plot") else ""
        log.info("tune.lr: %s%s", _line(found, "optimizer.lr"), where)
    return record


def _line(found: dict[str, Any], key: str) -> str:
    if found["found"] is None:
        why = (
            "trainer.fast_dev_run skips the finders"
            if "steps" not in found
            else (
                f"no suggestion from {found['steps']} steps (too few; raise the epochs or the "
                "train split)"
            )
        )
        return f"{key} stays {found['before']} ({why})"
    return f"{key} {found['before']} -> {found['found']:.4g}"
