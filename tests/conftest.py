"""Fixtures and the test environment; the helpers themselves live in tests/helpers/."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core: each worker, and the scripts it starts,
    # computes on one thread (set before torch loads; more threads per worker oversubscribe)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from tests.helpers import ROOT, SHARED_DATA, TINY, compose_config

os.environ.setdefault("LITSEG_ROOT", str(ROOT))
os.environ.setdefault("LITSEG_DATA_DIR", str(SHARED_DATA))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


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
