"""Decide whether W&B runs online or offline, so a run never hangs for lack of network."""

import netrc
import os
from pathlib import Path


def _has_netrc_key() -> bool:
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not path.is_file():
        return False
    try:
        return netrc.netrc(str(path)).authenticators("api.wandb.ai") is not None
    except (netrc.NetrcParseError, OSError):
        return False


def wandb_should_be_offline() -> bool:
    """Offline when WANDB_MODE is offline/disabled, or when no API key can be found."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return True
    if mode == "online":
        return False
    return not (os.environ.get("WANDB_API_KEY") or _has_netrc_key())
