"""Evaluate a checkpoint on the test split: ``python eval.py ckpt_path=path/to/best.ckpt``."""

import os

os.environ.setdefault("LITSEG_ROOT", os.path.dirname(os.path.abspath(__file__)))

import sys  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from litseg.evaluate import RESTORED_GROUPS, evaluate  # noqa: E402
from litseg.runtime.entry import (  # noqa: E402
    main_reporting_errors,
    run_reporting_errors,
    stored_group_overrides,
)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run_reporting_errors(evaluate, cfg)


if __name__ == "__main__":
    # data.root=... and the like adjust the checkpoint's config, not the placeholder's
    sys.argv[1:] = stored_group_overrides(sys.argv[1:], RESTORED_GROUPS, {"inference": "whole"})
    main_reporting_errors(main)
