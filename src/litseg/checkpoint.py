"""Load litseg checkpoints safely (weights_only) with errors that name the file."""

import pickle
from pathlib import Path
from typing import Any

import torch

from litseg.callbacks import CONFIG_KEY
from litseg.errors import ConfigError


def load_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """The checkpoint dict at ``path``, loaded with ``weights_only=True`` on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise ConfigError(f"{key}={path}: not a readable PyTorch checkpoint ({exc})") from exc
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"{key}={path}: expected a Lightning checkpoint with a state_dict")
    return checkpoint


def training_config(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The resolved training config litseg stored in the checkpoint, if any."""
    return checkpoint.get(CONFIG_KEY)
