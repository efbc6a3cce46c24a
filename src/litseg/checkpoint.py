"""Load litseg checkpoints safely (weights_only) with errors that name the file."""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from litseg.callbacks import CONFIG_KEY
from litseg.errors import ConfigError
from litseg.runtime.resume import checkpoint_file
from litseg.stored_config import check_stored_config, without_downloads


def load_checkpoint(
    path: str | Path, key: str = "ckpt_path", allow_targets: Iterable[str] = ()
) -> dict[str, Any]:
    """The checkpoint dict at ``path``, loaded with ``weights_only=True`` on the CPU.

    ``path`` may be a run directory: its best checkpoint is loaded
    (:func:`litseg.runtime.resume.checkpoint_file`, the rule every entry point shares).

    Its stored litseg config is checked against the target allowlist (``allow_targets``
    adds the caller's own) before anyone can build from it, and its model node is told not
    to fetch pretrained weights: the checkpoint's own weights replace them.
    """
    path = checkpoint_file(path, key, prefer="best")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any file may be named: a text file raises KeyError, a zip
        # RuntimeError, a truncated one EOFError; the message may span lines
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ConfigError(
            f"{key}={path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {why}); "
            "expected a .ckpt file written by litseg's train.py, or its run directory"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"{key}={path}: expected a Lightning checkpoint with a state_dict")
    stored = checkpoint.get(CONFIG_KEY)
    if stored is not None:
        check_stored_config(stored, f"{key}={path}", allow_targets)
        if isinstance(stored.get("model"), dict):
            stored["model"] = without_downloads(stored["model"])
    return checkpoint


def training_config(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The resolved training config litseg stored in the checkpoint, if any."""
    return checkpoint.get(CONFIG_KEY)
