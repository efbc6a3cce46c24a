"""Evaluate a checkpoint on the test split: ``python eval.py ckpt_path=path/to/best.ckpt``."""

import os

os.environ.setdefault("LITSEG_ROOT", os.path.dirname(os.path.abspath(__file__)))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from litseg.evaluate import evaluate  # noqa: E402
from litseg.utils.entry import run_reporting_errors  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run_reporting_errors(evaluate, cfg)


if __name__ == "__main__":
    main()
