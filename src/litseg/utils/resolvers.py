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


def register_resolvers() -> None:
    """Register litseg's resolvers (idempotent)."""
    for name, fn in {"litseg.by_task": by_task, "litseg.wandb_offline": wandb_offline}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
