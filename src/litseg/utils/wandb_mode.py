"""Decide whether W&B runs online or offline, so a run never hangs for lack of network."""

import logging
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.wandb.ai"


def _has_netrc_key() -> bool:
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not path.is_file():
        return False
    try:
        return netrc.netrc(str(path)).authenticators("api.wandb.ai") is not None
    except (netrc.NetrcParseError, OSError):
        return False


def server_reachable(base_url: str, timeout_s: float = 3.0) -> bool:
    """True when a TCP connection to the W&B server opens within ``timeout_s``."""
    url = urlparse(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wandb_should_be_offline() -> bool:
    """Offline when WANDB_MODE is offline/disabled, when no API key can be found, or when the
    server (WANDB_BASE_URL) cannot be reached: a run never waits on a missing network.
    ``WANDB_MODE=online`` skips the checks."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return True
    if mode == "online":
        return False
    if not (os.environ.get("WANDB_API_KEY") or _has_netrc_key()):
        return True
    base_url = os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
    if not server_reachable(base_url):
        log.warning("W&B server %s unreachable: logging offline (wandb sync later)", base_url)
        return True
    return False
