"""Export a checkpoint: ``python scripts/export.py ckpt_path=... format=onnx output=model.onnx``.

Writes the model (dynamic batch, height and width), a ``<output>.json`` with classes, palette
and normalisation, and checks parity against PyTorch with onnxruntime (or TorchScript).
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITSEG_ROOT", str(ROOT))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from litseg.export import export  # noqa: E402
from litseg.runtime.entry import main_reporting_errors, run_reporting_errors  # noqa: E402


@hydra.main(version_base="1.3", config_path=str(ROOT / "conf"), config_name="export")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    run_reporting_errors(export, cfg)


if __name__ == "__main__":
    main_reporting_errors(main)
