"""Shared fixtures: real Hydra composition of conf/ into configs that write under tmp_path."""

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = (ROOT.parent / "shared" / "datasets").resolve()

os.environ.setdefault("LITSEG_ROOT", str(ROOT))
os.environ.setdefault("LITSEG_DATA_DIR", str(SHARED_DATA))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

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
    """Compose conf/<config_name>.yaml as the CLI would, with outputs under ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=hydra_config)
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


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg(*overrides, config_name="train", tiny=True)`` -> a composed config."""

    def make(*overrides: str, config_name: str = "train", tiny: bool = True) -> DictConfig:
        extra = [o for o in TINY if not o.startswith("model.")] if tiny else []
        if tiny and not any(o.startswith("model=") and o != "model=unet" for o in overrides):
            extra += [o for o in TINY if o.startswith("model.")]
        return compose_config(config_name, [*extra, *overrides], tmp_path)

    yield make
    GlobalHydra.instance().clear()


def run_cli(script: str, *args: str, cwd: Path = ROOT, timeout: int = 300):
    """Run ``python <script> args...`` from the repository root as a user would."""
    import subprocess

    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(script: str, *args: str, stderr: int = -1):
    """Start ``python <script> args...`` from the repository root without waiting (for tests
    that signal, kill or race a run); stdout is dropped, stderr piped as text by default."""
    import subprocess

    return subprocess.Popen(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
