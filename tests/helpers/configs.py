"""Repository paths, the TINY overrides and real compositions of conf/ for tests."""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from litseg.config import compose

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
SHARED_DATA = (ROOT.parent / "shared" / "datasets").resolve()

# Tiny splits of the generated data: enough for every code path, fast on two cores.
TINY = [
    "data.splits.train.length=32",
    "data.splits.val.length=16",
    "data.splits.test.length=16",
    "data.batch_size=8",
    "data.eval_batch_size=16",
    "data.num_workers=0",
    "model.base_width=8",
    "model.depth=3",
]


def compose_config(
    config_name: str, overrides: list[str], output_dir: Path, hydra_config: bool = True
) -> DictConfig:
    """Compose conf/<config_name>.yaml as the CLI would, with outputs under ``output_dir``.

    With ``hydra_config`` the run's HydraConfig is set (output dir ``output_dir``, job 0) as
    inside ``python train.py``, and the ``hydra`` node is then dropped from the result.
    """
    cfg = compose(overrides, config_name, return_hydra_config=hydra_config, conf_dir=CONF)
    if hydra_config:
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(output_dir)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
        if hydra_config:
            del cfg.hydra
    return cfg


def train_run(run_dir: Path, overrides: list[str]) -> Path:
    """Train in this process with ``conf/train.yaml`` + ``overrides``, outputs in ``run_dir``
    (a real Trainer, as train.py runs it); returns ``run_dir``."""
    from hydra.core.global_hydra import GlobalHydra

    from litseg.train import train

    cfg = compose_config("train", overrides, run_dir)
    try:
        train(cfg)
    finally:
        GlobalHydra.instance().clear()
    return run_dir
