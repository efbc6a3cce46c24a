"""Predict masks with a checkpoint: ``python predict.py ckpt_path=... input=... output=...``."""

import os

os.environ.setdefault("LITSEG_ROOT", os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from litseg.predict import predict  # noqa: E402
from litseg.runtime.entry import main_reporting_errors, run_reporting_errors  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run_reporting_errors(predict, cfg)


if __name__ == "__main__":
    main_reporting_errors(main)
