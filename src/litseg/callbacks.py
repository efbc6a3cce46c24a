"""litseg's own Lightning callbacks."""

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from litseg.errors import ConfigError

CONFIG_KEY = "litseg_config"


class StoreRunConfig(Callback):
    """Put the run's resolved config (plain types only) into every checkpoint.

    eval.py and predict.py then rebuild the model and data from the checkpoint alone.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config


def channels_last_wanted(setting: bool | str, device_type: str) -> bool:
    """Whether ``callbacks.perf.channels_last`` (true, false or auto) means NHWC on a device."""
    if setting not in (True, False, "auto"):
        raise ConfigError(f"callbacks.perf.channels_last={setting!r}; expected true, false or auto")
    return setting is True or (setting == "auto" and device_type == "cpu")


class PerformanceOptions(Callback):
    """Speed options that leave the model code alone: channels_last memory and torch.compile.

    ``channels_last`` converts the network's weights and every batch's images to NHWC, which
    tensor cores and oneDNN prefer. ``auto`` (the default) turns it on for CPU runs, where it
    trains the default U-Net about 1.5x faster (docs/benchmarks.md), and leaves GPU runs as
    they are until measured there. ``compile`` compiles the network in place with
    ``nn.Module.compile``, so checkpoints keep the same ``state_dict`` keys as an eager run.

    Args:
        channels_last: true, false or "auto" (on for CPU runs only).
        compile: compile the network (``module.net``) before training or evaluation.
        compile_kwargs: passed to ``torch.compile``, e.g. ``{mode: max-autotune}``.
    """

    def __init__(
        self,
        channels_last: bool | str = "auto",
        compile: bool = False,
        compile_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._nhwc = channels_last_wanted(channels_last, "unknown")
        self.channels_last = channels_last
        self.compile = compile
        self.compile_kwargs = dict(compile_kwargs or {})
        self._compiled = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        net = getattr(pl_module, "net", pl_module)
        self._nhwc = channels_last_wanted(self.channels_last, trainer.strategy.root_device.type)
        if self._nhwc:
            net.to(memory_format=torch.channels_last)
        if self.compile and not self._compiled:
            net.compile(**self.compile_kwargs)
            self._compiled = True

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._nhwc and isinstance(batch, dict) and batch["image"].ndim == 4:
            batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)

    def on_validation_batch_start(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.on_train_batch_start(trainer, pl_module, batch, batch_idx)

    on_test_batch_start = on_predict_batch_start = on_validation_batch_start


class RngStateInCheckpoint(Callback):
    """Save the Python, NumPy and torch random states in checkpoints and restore them on resume.

    Lightning restores weights, optimizer and loop counters but not the global random state,
    so a resumed run would shuffle its next epoch differently from an uninterrupted one. The
    state is restored again after the sanity check, whose data loaders draw random seeds.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "numpy": [
                numpy_state[0],
                torch.from_numpy(numpy_state[1].astype(np.int64)),
                *numpy_state[2:],
            ],
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict
        self._restore()

    def _restore(self) -> None:
        if self._pending is None:
            return
        state = self._pending
        torch.set_rng_state(state["torch"])
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._pending = None


class WandbPredictionImages(Callback):
    """Log validation images with their truth and prediction as W&B masks every N epochs.

    Each picture is one ``wandb.Image`` with two mask layers, ``truth`` and ``prediction``,
    labelled with the data's class names (multilabel data: one layer pair per class). It
    does nothing without a WandbLogger, so it can stay in the default callbacks.

    Args:
        every_n_epochs: log at validation epochs divisible by this (0 switches it off).
        max_images: pictures per logging epoch, taken from the first validation batch.
        key: the W&B key the pictures are logged under.
    """

    def __init__(
        self, every_n_epochs: int = 5, max_images: int = 4, key: str = "val/predictions"
    ) -> None:
        self.every_n_epochs = every_n_epochs
        self.max_images = max_images
        self.key = key

    @staticmethod
    def _wandb_logger(trainer: Trainer) -> Any:
        from lightning.pytorch.loggers import WandbLogger

        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def _due(self, trainer: Trainer) -> bool:
        return (
            self.every_n_epochs > 0
            and not trainer.sanity_checking
            and trainer.current_epoch % self.every_n_epochs == 0
        )

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or dataloader_idx != 0 or not trainer.is_global_zero:
            return
        logger = self._wandb_logger(trainer)
        if logger is None or not self._due(trainer):
            return
        images = batch["image"][: self.max_images]
        with torch.no_grad():
            logits = pl_module(images)
        pictures = self.pictures(
            images, batch["mask"][: self.max_images], logits, pl_module, trainer.datamodule
        )
        logger.experiment.log({self.key: pictures, "trainer/global_step": trainer.global_step})

    @staticmethod
    def pictures(
        images: torch.Tensor,
        masks: torch.Tensor,
        logits: torch.Tensor,
        pl_module: LightningModule,
        datamodule: Any,
    ) -> list[Any]:
        """One ``wandb.Image`` per sample, with truth and prediction mask layers."""
        import wandb

        from litseg.metrics import predictions
        from litseg.visualize import to_uint8_image

        hp = pl_module.hparams
        names = list(getattr(pl_module, "class_names", None) or range(hp.num_classes))
        preds = predictions(logits.float(), hp.task, hp.threshold).long().cpu().numpy()
        truth = masks.long().cpu().numpy()
        mean = getattr(datamodule, "mean", None)
        std = getattr(datamodule, "std", None)
        out = []
        for i in range(images.shape[0]):
            picture = to_uint8_image(images[i], mean, std)
            if hp.task == "multilabel":
                layers = {}
                for c, name in enumerate(names):
                    labels = {0: "none", 1: str(name)}
                    for layer, data in (("truth", truth), ("prediction", preds)):
                        layer_data = {"mask_data": data[i, c], "class_labels": labels}
                        layers[f"{layer}_{name}"] = layer_data
            else:
                if hp.task == "binary":
                    labels = {0: "background", 1: str(names[0])}
                else:
                    labels = {c: str(name) for c, name in enumerate(names)}
                if hp.get("ignore_index") is not None:
                    labels[int(hp.ignore_index)] = "ignore"
                layers = {
                    "truth": {"mask_data": truth[i], "class_labels": labels},
                    "prediction": {"mask_data": preds[i], "class_labels": labels},
                }
            out.append(wandb.Image(picture, masks=layers))
        return out


class ResumableModelCheckpoint(ModelCheckpoint):
    """litseg's checkpoints: the best by the monitored metric, and ``last.ckpt`` = the last state.

    On top of Lightning's ModelCheckpoint:
    - ``last.ckpt`` is rewritten after every validation or training epoch, whatever the
      monitored metric did (Lightning 2.6 rewrites it only when a top-k file was saved), and
      every ``last_every_n_train_steps`` steps inside an epoch, for mid-epoch resume; the
      best checkpoint is untouched by these (Lightning's own ``every_n_train_steps`` would
      switch epoch-end best saving off, so litseg refuses it).
    - ``save_last_now`` writes it on demand (StopOnSignal).
    - A run resumed into a new folder keeps the interrupted run's best: its top-k files are
      copied over (rank zero) with their scores, but only files that sit beside the
      checkpoint being resumed (``source_dir``): paths in a checkpoint are data and never
      make litseg read elsewhere.
    """

    def __init__(self, *args: Any, last_every_n_train_steps: int | None = None, **kwargs: Any):
        if kwargs.get("every_n_train_steps"):
            raise ConfigError(
                "callbacks.model_checkpoint.every_n_train_steps would stop the best checkpoint "
                "being saved at epoch ends; use callbacks.model_checkpoint."
                "last_every_n_train_steps for mid-epoch last.ckpt saves"
            )
        if last_every_n_train_steps is not None and (
            not isinstance(last_every_n_train_steps, int) or last_every_n_train_steps < 1
        ):
            raise ConfigError(
                "callbacks.model_checkpoint.last_every_n_train_steps="
                f"{last_every_n_train_steps!r}; expected null or an integer >= 1"
            )
        super().__init__(*args, **kwargs)
        self.last_every_n_train_steps = last_every_n_train_steps
        self.source_dir: Path | None = None

    def save_last_now(self, trainer: Trainer) -> str | None:
        """Write ``last.ckpt`` for the current step (once per step); return its path."""
        if not self.save_last or trainer.sanity_checking:
            return self.last_model_path or None
        if self._last_global_step_saved != trainer.global_step or not self.last_model_path:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        return self.last_model_path

    def _fitting(self, trainer: Trainer) -> bool:
        from lightning.pytorch.trainer.states import TrainerFn

        return (
            not trainer.fast_dev_run
            and trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
        )

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        n = self.last_every_n_train_steps
        if n and self._fitting(trainer) and trainer.global_step % n == 0:
            self.save_last_now(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if self._fitting(trainer) and not self._should_save_on_train_epoch_end(trainer):
            self.save_last_now(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._fitting(trainer) and self._should_save_on_train_epoch_end(trainer):
            self.save_last_now(trainer)

    def _copyable(self, path: str) -> Path | None:
        """A stored top-k path, when it is a regular .ckpt file beside the resumed checkpoint."""
        if self.source_dir is None:
            return None
        source = Path(path)
        try:
            inside = source.resolve().parent == self.source_dir.resolve()
        except OSError:
            return None
        if inside and source.suffix == ".ckpt" and source.is_file() and not source.is_symlink():
            return source
        return None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        if self.dirpath is None or old_dir is None or Path(old_dir) == Path(self.dirpath):
            super().load_state_dict(state_dict)
            return
        moved: dict[str, str] = {}
        for old in state_dict.get("best_k_models", {}):
            source = self._copyable(old)
            if source is None:
                continue
            target = Path(self.dirpath) / source.name
            if rank_zero_only.rank == 0 and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
            moved[old] = str(target)
        self.best_k_models = {
            moved[path]: score
            for path, score in state_dict.get("best_k_models", {}).items()
            if path in moved
        }
        if not self.best_k_models:
            return
        self.kth_best_model_path = moved.get(state_dict.get("kth_best_model_path", ""), "")
        self.kth_value = state_dict.get("kth_value", self.kth_value)
        best = moved.get(state_dict.get("best_model_path", ""))
        if best is not None:
            self.best_model_path = best
            self.best_model_score = state_dict.get("best_model_score")
