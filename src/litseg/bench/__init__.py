"""Measuring logic behind ``scripts/benchmark.py`` (one command, four subcommands).

- :mod:`litseg.bench.measure`: timing (alternating A/B runs, paired medians), training,
  forward and loader images/s, and FLOP counts; used by every subcommand.
- :mod:`litseg.bench.ceiling`: the FLOP/s ceiling of a device and dtype, best over several
  matmul shapes, and why a model's efficiency may still read above it.
- :mod:`litseg.bench.contenders`: litseg's sliding window vs MONAI's, onnxruntime vs eager.
- :mod:`litseg.bench.compare`: ``compare``, litseg side by side with its references.
- :mod:`litseg.bench.tables`: ``models``, ``loader`` and ``inference`` tables.

Every ratio is measured pair by pair (A B A B ...) and the median reported, because shared
machines are noisy.
"""

import tempfile
from pathlib import Path

from omegaconf import DictConfig, open_dict

from litseg.config import compose

ROOT = Path(__file__).resolve().parents[3]
CONF = ROOT / "conf"


def compose_train(*overrides: str, output_dir: str | Path | None = None) -> DictConfig:
    """conf/train.yaml composed as ``python train.py <overrides>`` would, outputs under
    ``output_dir`` (a new temporary folder when not given), so a benchmark writes nothing
    into the repository."""
    cfg = compose(overrides, conf_dir=CONF)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir or tempfile.mkdtemp(prefix="litseg-bench-"))
    return cfg
