"""Train a segmentation model: ``python train.py model=unet loss=dice data=shapes``."""

import os

os.environ.setdefault("LITSEG_ROOT", os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from litseg.runtime.entry import (  # noqa: E402
    main_reporting_errors,
    monitored_value,
    run_reporting_errors,
)
from litseg.train import train  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the monitored metric for sweepers (e.g. Optuna)."""
    return monitored_value(run_reporting_errors(train, cfg))


if __name__ == "__main__":
    main_reporting_errors(main)
