"""Decide whether W&B runs online or offline, so a run never hangs for lack of network.

The server counts as reachable only when it gives an HTTP answer (any status) within a few
seconds in total: a host that accepts the connection and then stays silent (a half-open
endpoint, a tarpit) would otherwise hang W&B's start-up for minutes and then crash the run.
The answer is checked once per process and kept in an environment variable, so DDP workers
and other subprocesses of the run reuse it instead of waiting again.
"""

import http.client
import logging
import netrc
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.wandb.ai"
# total seconds the reachability check may take
CHECK_BUDGET_S = 3.0
# "<1|0> <base url>": this process's (or its parent's) answer for that server
CACHE_ENV = "LITSEG_WANDB_REACHABLE"


def _has_netrc_key() -> bool:
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    if not path.is_file():
        return False
    try:
        return netrc.netrc(str(path)).authenticators("api.wandb.ai") is not None
    except (netrc.NetrcParseError, OSError):
        return False


def server_reachable(base_url: str, timeout_s: float = CHECK_BUDGET_S) -> bool:
    """True when ``GET <base_url>/healthz`` gets an HTTP answer, of any status, within
    ``timeout_s`` seconds in total (connecting, sending and reading the status line).

    A refused connection, a name that does not resolve, a TLS failure or silence count as
    unreachable. Not cached: see :func:`cached_server_reachable`.
    """
    url = base_url.rstrip("/") + "/healthz"
    answered = threading.Event()

    def probe() -> None:
        try:
            # a fresh opener: urlopen's global one keeps the proxies of its first call
            with urllib.request.build_opener().open(url, timeout=timeout_s):
                answered.set()
        except urllib.error.HTTPError:  # an error status is still an answer
            answered.set()
        except (OSError, ValueError, http.client.HTTPException):
            pass

    # the socket timeout bounds each read, not the total: the thread bounds the total, and
    # a probe still waiting after that ends on its own socket timeout
    thread = threading.Thread(target=probe, name="litseg-wandb-check", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return answered.is_set()


def cached_server_reachable(base_url: str, timeout_s: float = CHECK_BUDGET_S) -> bool:
    """:func:`server_reachable`, checked once per process (and its subprocesses) per URL.

    An unreachable server is reported with one warning line, by the process that checked.
    """
    cached = os.environ.get(CACHE_ENV, "").split(" ", 1)
    if len(cached) == 2 and cached[1] == base_url and cached[0] in ("0", "1"):
        return cached[0] == "1"
    started = time.monotonic()
    reachable = server_reachable(base_url, timeout_s)
    os.environ[CACHE_ENV] = f"{int(reachable)} {base_url}"
    if not reachable:
        log.warning(
            "W&B server %s gave no HTTP answer (checked for %.1f s of %.1f s): logging offline "
            "(upload later with `wandb sync <run dir>/wandb/offline-run-*`)",
            base_url,
            time.monotonic() - started,
            timeout_s,
        )
    return reachable


def wandb_should_be_offline() -> bool:
    """Offline when WANDB_MODE is offline/disabled, when no API key can be found, or when the
    server (WANDB_BASE_URL) does not answer within a few seconds: a run never waits on a
    missing or silent network. ``WANDB_MODE=online`` skips the checks."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return True
    if mode == "online":
        return False
    if not (os.environ.get("WANDB_API_KEY") or _has_netrc_key()):
        return True
    base_url = os.environ.get("WANDB_BASE_URL", DEFAULT_BASE_URL)
    return not cached_server_reachable(base_url)
