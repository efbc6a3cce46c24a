"""OmegaConf resolvers used by conf/: registered once, when litseg is imported.

None of them touches the network: resolving a config must stay fast and offline (W&B's
online/offline mode is decided when its logger is built, in litseg.builders)."""

import os
from typing import Any

from omegaconf import OmegaConf


def by_task(task: str, binary: Any, otherwise: Any) -> Any:
    """Pick the binary value when ``task`` is binary, e.g. one output channel instead of C."""
    value = binary if task == "binary" else otherwise
    return OmegaConf.create(value) if isinstance(value, list | dict) else value


def cpu_precision() -> str:
    """``bf16-mixed`` on a CPU with native bf16, ``32-true`` elsewhere (decided at run time)."""
    from litseg.hardware import cpu_precision as decide

    return decide()


def length(value: Any) -> int:
    """How many items a config list holds (e.g. data.num_classes from data.class_names)."""
    return len(value)


def under(root: str, path: str | None) -> str:
    """``path`` joined to ``root`` (absolute paths kept); None gives a path that never exists,
    so a split's ``when_exists: ${litseg.under:...}`` drops the split while the path is unset."""
    if path is None:
        return os.path.join(os.devnull, "unset")
    return os.path.join(root, path)


def coco_classes(root: str, train_json: str, categories: Any, task: str) -> Any:
    """data=coco's class names, read from the train JSON's categories (see data/coco.yaml)."""
    from litseg.data.datasets.coco import config_class_names

    return OmegaConf.create(config_class_names(root, train_json, categories, task))


def labelme_classes(labels: Any, task: str) -> Any:
    """data=labelme's class names from data.labels, checked (see data/labelme.yaml)."""
    from litseg.data.datasets.labelme import config_class_names

    return OmegaConf.create(config_class_names(labels, task))


def register_resolvers() -> None:
    """Register litseg's resolvers (idempotent)."""
    for name, fn in {
        "litseg.by_task": by_task,
        "litseg.cpu_precision": cpu_precision,
        "litseg.length": length,
        "litseg.under": under,
        "litseg.coco_classes": coco_classes,
        "litseg.labelme_classes": labelme_classes,
    }.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
