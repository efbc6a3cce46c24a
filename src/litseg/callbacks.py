"""litseg's own Lightning callbacks."""

from typing import Any

from lightning import Callback, LightningModule, Trainer

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
