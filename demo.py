"""A browser demo of a checkpoint: ``python demo.py ckpt_path=<checkpoint or run dir>``."""

import os

os.environ.setdefault("LITSEG_ROOT", os.path.dirname(os.path.abspath(__file__)))
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no usage reports, no version check

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from litseg.demo import demo  # noqa: E402
from litseg.runtime.entry import main_reporting_errors, run_reporting_errors  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="demo")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run_reporting_errors(demo, cfg)


if __name__ == "__main__":
    main_reporting_errors(main)
