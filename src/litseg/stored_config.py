"""A config read from a checkpoint is data: it may only build what litseg ships configs for.

predict.py, eval.py, scripts/export.py and resumed runs rebuild the model, transforms, data
and loss from the resolved config that training stored in the checkpoint. ``weights_only``
protects the pickle, but ``hydra.utils.instantiate`` would import and call any ``_target_``
the file names (``builtins.open``, ``shutil.copyfile``, ...). Every ``_target_`` in such a
config must therefore be on the allowlist below before anything is built.
"""

import functools
import importlib
import inspect
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from litseg.errors import ConfigError

TARGET = "_target_"

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
TARGET_LINE = re.compile(r"^\s*(?:-\s*)?_target_:\s*([A-Za-z_][\w.]*)\s*(?:#.*)?$", re.MULTILINE)


@functools.cache
def shipped_targets(conf_dir: Path = CONF_DIR) -> frozenset[str]:
    """Every ``_target_`` named by the YAML files under conf/: written by the project or
    by the user who added a model, loss or dataset there, so trusted."""
    found = set()
    for path in sorted(conf_dir.rglob("*.yaml")):
        found.update(TARGET_LINE.findall(path.read_text(encoding="utf-8")))
    return frozenset(found)


# albumentations transforms that read files or call arbitrary code given to them.
REFUSED_TRANSFORMS = frozenset(
    {"Lambda", "FDA", "HistogramMatching", "PixelDistributionAdaptation", "TemplateTransform"}
)


def _resolve(target: str) -> Any:
    """The object a dotted name points to, importing only its (allowlisted) module."""
    module_name, _, attr = target.rpartition(".")
    return getattr(importlib.import_module(module_name), attr, None)


def _in_family(target: str) -> bool:
    """Transforms, optimizers and schedulers any config may use, by module and base class."""
    module_name, _, name = target.rpartition(".")
    if module_name == "albumentations" and name not in REFUSED_TRANSFORMS:
        import albumentations as A
        from albumentations.core.composition import BaseCompose
        from albumentations.core.transforms_interface import BasicTransform

        obj = getattr(A, name, None)
        return inspect.isclass(obj) and issubclass(obj, BasicTransform | BaseCompose)
    if module_name == "torch.optim":
        import torch

        obj = getattr(torch.optim, name, None)
        return inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)
    if module_name == "torch.optim.lr_scheduler":
        from torch.optim import lr_scheduler

        obj = getattr(lr_scheduler, name, None)
        bases = (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)
        return inspect.isclass(obj) and issubclass(obj, bases)
    return False


def target_allowed(target: Any, extra: Iterable[str] = ()) -> bool:
    """Whether a stored ``_target_`` may be built: named under conf/, in a safe family, or
    in ``extra`` (the command line's ``allow_targets``, which the user wrote)."""
    if not isinstance(target, str):
        return False
    return target in shipped_targets() or target in set(extra) or _in_family(target)


def _targets(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted key, value) of a ``_target_`` anywhere under ``node``."""
    if isinstance(node, dict):
        for name, value in node.items():
            path = f"{key}.{name}" if key else str(name)
            if name == TARGET:
                yield path, value
            else:
                yield from _targets(value, path)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _targets(value, f"{key}[{i}]")


def check_stored_config(
    config: dict[str, Any], source: str, extra: Iterable[str] = ()
) -> dict[str, Any]:
    """Refuse a stored config naming any target off the allowlist; return it unchanged.

    Every node is checked before anything is built, so a refused file builds nothing.
    ``source`` (the checkpoint's path) is named in the one-line error.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: its stored litseg_config is not a mapping")
    for key, target in _targets(config):
        if not target_allowed(target, extra):
            raise ConfigError(
                f"{source}: stored config key '{key}' names {target!r}, which is not on "
                "litseg's allowlist of buildable targets; refusing to build anything from "
                "this checkpoint (a checkpoint's config is data, not code; a target of your own "
                "goes in a conf/ YAML or allow_targets=[...])"
            )
    return config


def without_downloads(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """A stored model config that fetches no pretrained weights (the checkpoint has them)."""
    model_cfg = dict(model_cfg)
    if "pretrained" in model_cfg:
        model_cfg["pretrained"] = False
    for key in ("weights_path", "weights_backbone"):
        if key in model_cfg:
            model_cfg[key] = None
    return model_cfg
