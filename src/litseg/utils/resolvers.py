"""OmegaConf resolvers used by conf/: registered once, when litseg is imported."""

from typing import Any

from omegaconf import OmegaConf


def by_task(task: str, binary: Any, otherwise: Any) -> Any:
    """Pick the binary value when ``task`` is binary, e.g. one output channel instead of C."""
    value = binary if task == "binary" else otherwise
    return OmegaConf.create(value) if isinstance(value, list | dict) else value


def wandb_offline() -> bool:
    """True when W&B should log offline: WANDB_MODE says so or no credentials are present."""
    from litseg.utils.wandb_mode import wandb_should_be_offline

    return wandb_should_be_offline()


def cpu_precision() -> str:
    """``bf16-mixed`` on a CPU with native bf16, ``32-true`` elsewhere (decided at run time)."""
    from litseg.hardware import cpu_precision as decide

    return decide()


def register_resolvers() -> None:
    """Register litseg's resolvers (idempotent)."""
    for name, fn in {
        "litseg.by_task": by_task,
        "litseg.wandb_offline": wandb_offline,
        "litseg.cpu_precision": cpu_precision,
    }.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
