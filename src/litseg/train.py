"""The training run behind ``python train.py``: fit, validate, test the best checkpoint."""

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

from litseg.builders import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_module,
    settle_wandb,
)
from litseg.callbacks import ResumableModelCheckpoint, RngStateInCheckpoint, StoreRunConfig
from litseg.checkpoint_io import AtomicCheckpointIO
from litseg.config_checks import check_run_config
from litseg.errors import ConfigError, LitsegError, RunStopped
from litseg.run_history import carry_history
from litseg.runtime.launch import distributed_job
from litseg.runtime.resume import resolve_ckpt_path
from litseg.tuning import run_finders
from litseg.utils.summary import to_floats, write_summary

log = logging.getLogger(__name__)
# per-class metric names, left out of the one-line summary
PER_CLASS = ("/IoU_", "/dice_", "/HD95_")


def output_dir(cfg: DictConfig) -> Path:
    """This run's folder (Hydra's output dir, or paths.output_dir outside Hydra)."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.output_dir)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, then test the best checkpoint; return the final metrics and where things live.

    The returned dict holds ``metrics`` (val and test), ``best_checkpoint``, ``run_dir`` and
    ``objects`` (the trainer, module and datamodule, for callers that inspect them).
    """
    check_run_config(cfg)
    started = time.time()
    run_dir = output_dir(cfg)
    ckpt_path = resolve_ckpt_path(
        cfg.get("ckpt_path"),
        Path(cfg.paths.log_dir),
        cfg.task_name,
        run_dir,
        # each node resolved in place: a masked copy loses ${paths...} (data.root)
        expected={
            k: OmegaConf.to_container(cfg[k], resolve=True) if cfg.get(k) is not None else None
            for k in ("model", "data", "optimizer", "scheduler")
        },
    )
    if ckpt_path:
        log.info("Resuming from %s (this run writes to %s)", ckpt_path, run_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    _prepare_wandb(cfg)

    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [*build_callbacks(cfg), StoreRunConfig(resolved), RngStateInCheckpoint()]
    loggers = build_loggers(cfg)
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **plugins
    )
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if ckpt_path and isinstance(checkpoint, ResumableModelCheckpoint):
        checkpoint.source_dir = Path(ckpt_path).parent
    # tune.batch_size / tune.lr: applied to cfg, module, datamodule and resolved before fitting
    tuned = run_finders(cfg, trainer, module, datamodule, run_dir, resolved, ckpt_path)
    for logger in loggers:
        logger.log_hyperparams(resolved)
    # DDP workers re-run the command line: make it this job's, with the resolved checkpoint
    launches = isinstance(getattr(trainer.strategy, "launcher", None), _SubprocessScriptLauncher)
    if launches and "submitit" in str(_hydra_launcher_target()):
        raise ConfigError(
            f"trainer.devices={cfg.trainer.devices} starts DDP workers by re-running the command "
            "line, which a submitit job cannot do; use the default launcher for multi-process "
            "jobs on this machine, or hydra/launcher=submitit_slurm with "
            "hydra.launcher.tasks_per_node equal to trainer.devices (SLURM starts the ranks)"
        )
    replace = {"ckpt_path": ckpt_path} if ckpt_path else None
    metrics: dict[str, float] = {}
    status, stop = "completed", None
    with distributed_job(launches, run_dir, replace):
        try:
            if cfg.get("train", True):
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
                metrics.update(to_floats(trainer.callback_metrics))
        except (RunStopped, LitsegError) as exc:
            status = exc.status if isinstance(exc, RunStopped) else "failed"
            stop = exc
            metrics.update(to_floats(trainer.callback_metrics))
        except BaseException as exc:
            _write_stopped_summary(trainer, run_dir, cfg, ckpt_path, started, "failed", exc)
            raise

        best = checkpoint.best_model_path if checkpoint else ""
        testing = cfg.get("test") and "test" in datamodule.split_args
        if stop is None and testing and not trainer.fast_dev_run:
            trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update(to_floats(trainer.callback_metrics))

    result = {
        "status": status,
        "run_dir": str(run_dir),
        "best_checkpoint": best or None,
        "monitor": cfg.monitor.metric,
        "best_score": float(checkpoint.best_model_score)
        if checkpoint and checkpoint.best_model_score is not None
        else None,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "last_checkpoint": (checkpoint.last_model_path or None) if checkpoint else None,
        "metrics": dict(sorted(metrics.items())),
    }
    if tuned:
        result["tuning"] = tuned
    if stop is not None:
        result["error"] = str(stop)
    if trainer.is_global_zero:
        history = carry_history(run_dir, ckpt_path)
        _write_summary_safely(
            run_dir / "summary.json",
            task="train",
            **result,
            duration_s=round(time.time() - started, 1),
            overrides=_overrides(),
            resumed_from=ckpt_path,
            history=history,
        )
        _report(result, time.time() - started)
    if stop is not None:
        raise stop
    result["objects"] = {"trainer": trainer, "module": module, "datamodule": datamodule}
    return result


def _write_stopped_summary(
    trainer: L.Trainer,
    run_dir: Path,
    cfg: DictConfig,
    ckpt_path: str | None,
    started: float,
    status: str,
    exc: BaseException,
) -> None:
    """A summary for a run that ended in an unexpected error, so the folder says what happened."""
    if not trainer.is_global_zero:
        return
    _write_summary_safely(
        run_dir / "summary.json",
        task="train",
        status=status,
        error=f"{type(exc).__name__}: {exc}",
        run_dir=str(run_dir),
        monitor=cfg.monitor.metric,
        epochs=trainer.current_epoch,
        global_step=trainer.global_step,
        metrics=to_floats(trainer.callback_metrics),
        duration_s=round(time.time() - started, 1),
        overrides=_overrides(),
        resumed_from=ckpt_path,
    )


def _write_summary_safely(path: Path, **fields: Any) -> None:
    """summary.json, or one logged line when it cannot be written (a full disk must not hide
    the error that stopped the run)."""
    try:
        write_summary(path, **fields)
    except OSError as exc:
        log.error("could not write %s: %s", path, exc.strerror or exc)


def _hydra_launcher_target() -> str | None:
    if not HydraConfig.initialized():
        return None
    return OmegaConf.select(HydraConfig.get(), "launcher._target_")


def _prepare_wandb(cfg: DictConfig) -> None:
    """W&B settings that depend on the run: online or offline decided now (before the config
    is stored, :func:`litseg.builders.settle_wandb`; checkpoints are uploaded only online) and
    multirun jobs share a group named after the sweep (unless one is set)."""
    wandb_cfg = OmegaConf.select(cfg, "logger.wandb")
    if wandb_cfg is None:
        return
    settle_wandb(cfg)
    with open_dict(cfg):
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if multirun and wandb_cfg.get("group") is None:
            wandb_cfg.group = f"{cfg.task_name}-{Path(HydraConfig.get().sweep.dir).name}"


def _overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _report(result: dict[str, Any], seconds: float) -> None:
    """Tell the user where the run lives and its final validation metrics."""
    log.info("Run directory: %s", result["run_dir"])
    if result["best_checkpoint"]:
        log.info("Best checkpoint: %s", result["best_checkpoint"])
    shown = {
        k: v
        for k, v in result["metrics"].items()
        if k.startswith(("val/", "test/")) and not any(s in k for s in PER_CLASS)
    }
    log.info(
        "Final metrics after %.0f s: %s",
        seconds,
        ", ".join(f"{k}={v:.4f}" for k, v in shown.items()),
    )
