"""The one way to compose litseg's Hydra config outside ``python train.py``.

Scripts, notebooks, benchmarks and tests call :func:`compose` instead of writing
``initialize_config_dir`` themselves, so every caller reads the same conf/ with the same
resolvers, as ``python train.py <overrides>`` would.
"""

import os
from collections.abc import Iterable
from pathlib import Path

from omegaconf import DictConfig

from litseg.errors import ConfigError
from litseg.utils.resolvers import register_resolvers

# src/litseg/config.py -> the checkout holding src/ and conf/ (an editable install)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def checkout_root() -> Path:
    """The litseg checkout whose conf/ is composed: $LITSEG_ROOT when set, else the folder
    that holds this package's src/ (``pip install -e .``)."""
    env = os.environ.get("LITSEG_ROOT")
    return Path(env).expanduser().resolve() if env else PACKAGE_ROOT


def config_dir() -> Path:
    """conf/ of :func:`checkout_root`; a ConfigError naming LITSEG_ROOT when it has none."""
    root = checkout_root()
    conf = root / "conf"
    if not (conf / "train.yaml").is_file():
        where = "LITSEG_ROOT" if os.environ.get("LITSEG_ROOT") else "the litseg package's checkout"
        raise ConfigError(
            f"no conf/train.yaml under {root} ({where}); set LITSEG_ROOT to the litseg "
            "repository folder (the one holding conf/)"
        )
    return conf


def compose(
    overrides: Iterable[str] = (),
    config_name: str = "train",
    *,
    return_hydra_config: bool = False,
    conf_dir: str | Path | None = None,
) -> DictConfig:
    """conf/<config_name>.yaml composed with ``overrides`` as the CLI would compose it.

    ``return_hydra_config`` keeps the ``hydra`` node (run dir, choices, task overrides) for
    callers that read it; ``conf_dir`` composes another config folder (default
    :func:`config_dir`). LITSEG_ROOT is set to the checkout when unset, so ``paths.root_dir``
    names the same folder as the conf/ that was read. Any earlier Hydra state is cleared.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    conf = Path(conf_dir).resolve() if conf_dir is not None else config_dir()
    os.environ.setdefault("LITSEG_ROOT", str(conf.parent))
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return hydra_compose(
            config_name, overrides=list(overrides), return_hydra_config=return_hydra_config
        )
