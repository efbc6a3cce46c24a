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

import os
import tempfile
from pathlib import Path

from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[3]
CONF = ROOT / "conf"


def compose_train(*overrides: str, output_dir: str | Path | None = None) -> DictConfig:
    """conf/train.yaml composed as ``python train.py <overrides>`` would, outputs under
    ``output_dir`` (a new temporary folder when not given), so a benchmark writes nothing
    into the repository."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from litseg.utils.resolvers import register_resolvers

    os.environ.setdefault("LITSEG_ROOT", str(ROOT))
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir or tempfile.mkdtemp(prefix="litseg-bench-"))
    return cfg
