"""SegmentationModule: the training, validation and test logic shared by every model and loss."""

import functools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torchmetrics import Metric

from litseg.errors import ConfigError
from litseg.metrics import build_metrics, predictions, save_confusion_matrix, summarize
from litseg.tasks import check_num_classes, check_task

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class SegmentationModule(LightningModule):
    """Trains a segmentation network with one loss and logs the metric names that
    docs/architecture.md lists (``val/mIoU``, ``val/IoU_<class>``, ``val/dice``, ...).

    Args:
        net: maps images to logits, or to ``{"out": logits, "aux": logits}`` (torchvision).
        loss: a loss taking ``(logits, target)``.
        task, num_classes, ignore_index, class_names: from the data config.
        optimizer: partial taking the parameters (a Hydra ``_partial_``).
        scheduler: partial taking the optimizer, or None.
        scheduler_interval: ``epoch`` or ``step``.
        monitor: metric a plateau scheduler follows.
        aux_weight: weight of the auxiliary heads' loss when the net returns ``aux`` (or any
            other output besides ``out``): loss(out) + aux_weight * loss(aux).
        threshold: probability threshold for binary and multilabel predictions.
        boundary_metric: also compute the boundary HD95 at test time (``test/HD95``); needs
            MONAI (``pip install 'litseg[metrics]'``) and about 0.7 s per 480x360 CPU frame.
        confusion_matrix: save ``confusion_matrix.png`` in the run directory after testing
            (and log it to W&B when a WandbLogger is attached).
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        task: str,
        num_classes: int,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        ignore_index: int | None = None,
        class_names: list[str] | None = None,
        scheduler_interval: str = "epoch",
        monitor: str = "val/mIoU",
        aux_weight: float = 0.4,
        threshold: float = 0.5,
        boundary_metric: bool = False,
        confusion_matrix: bool = True,
    ) -> None:
        super().__init__()
        # (global step, loss value) of each training step skipped for a non-finite loss
        self.nonfinite_steps: list[tuple[int, float]] = []
        check_task(task)
        check_num_classes(task, num_classes)
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        class_names = list(class_names)
        if len(class_names) != num_classes:
            raise ValueError(
                f"data.class_names has {len(class_names)} names but data.num_classes={num_classes}"
            )
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.class_names = class_names
        self.val_metrics = build_metrics(task, num_classes, ignore_index)
        self.test_metrics = build_metrics(task, num_classes, ignore_index, boundary_metric)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, C, H, W) for a batch of images; auxiliary outputs are dropped."""
        out = self.net(images)
        return out["out"] if isinstance(out, Mapping) else out

    def _loss(self, out: torch.Tensor | Mapping[str, torch.Tensor], target: torch.Tensor):
        """Main logits and loss; every extra output (aux heads) adds aux_weight * its loss."""
        if not isinstance(out, Mapping):
            return out, self.loss_fn(out, target)
        loss = self.loss_fn(out["out"], target)
        if self.hparams.aux_weight:
            for name, logits in out.items():
                if name != "out":
                    loss = loss + self.hparams.aux_weight * self.loss_fn(logits, target)
        return out["out"], loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        _, loss = self._loss(self.net(batch["image"]), batch["mask"])
        finite = bool(torch.isfinite(loss.detach()))
        if self.trainer.world_size > 1:  # every rank skips together, or none does
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            # a non-finite loss never reaches the weights; StopOnNonFiniteLoss decides when
            # to stop the run
            self.nonfinite_steps.append((self.global_step, float(loss.detach())))
            return None
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch["image"].shape[0],
        )
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        logits, loss = self._loss(self.net(batch["image"]), batch["mask"])
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(
            predictions(logits, self.hparams.task, self.hparams.threshold), batch["mask"]
        )
        self.log(
            f"{stage}/loss",
            loss,
            on_epoch=True,
            prog_bar=stage == "val",
            batch_size=batch["image"].shape[0],
            sync_dist=True,
        )

    def _eval_epoch_end(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        computed = metrics.compute()  # on every process: it synchronises under DDP
        values = summarize(computed, stage, self.class_names)
        if stage == "test" and self.hparams.confusion_matrix:
            self._save_confusion_matrix(metrics["confmat"], computed["confmat"])
        metrics.reset()
        self.log(f"{stage}/mIoU", values.pop(f"{stage}/mIoU"), prog_bar=True)
        self.log_dict(values)

    def _save_confusion_matrix(self, metric: Metric, confmat: torch.Tensor) -> None:
        """confusion_matrix.png in the run directory (trainer.default_root_dir), and to W&B."""
        if not self.trainer.is_global_zero:
            return
        path = Path(self.trainer.default_root_dir) / "confusion_matrix.png"
        save_confusion_matrix(metric, self.class_names, path, self.hparams.task, confmat)
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="test/confusion_matrix", images=[str(path)])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        factory = self.scheduler_factory
        if getattr(factory, "keywords", {}).get("total_steps", "") is None:
            # a per-step schedule sized to this run (scheduler=onecycle)
            if self._trainer is None:
                raise ConfigError(
                    "scheduler.total_steps=null is sized by the Trainer; outside one, set "
                    "scheduler.total_steps to the number of optimizer steps"
                )
            factory = functools.partial(
                factory, total_steps=int(self.trainer.estimated_stepping_batches)
            )
        scheduler = {
            "scheduler": factory(optimizer),
            "interval": self.hparams.scheduler_interval,
            "monitor": self.hparams.monitor,
        }
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
