"""Debian packages a test needs (SLURM, PostgreSQL, Chromium), installed on a fresh machine.

``apt-get`` takes its own locks and fails when another apt-get holds them, so tests that run
side by side (``pytest -n``) install one at a time under :func:`apt_lock`.
"""

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = Path(tempfile.gettempdir()) / "litseg-tests-apt.lock"


@contextmanager
def apt_lock() -> Iterator[None]:
    """Hold the tests' apt lock (a file lock shared by every pytest worker on the machine)."""
    with open(LOCK_FILE, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def apt_install(*packages: str, timeout: float = 900) -> str | None:
    """``apt-get update`` and ``apt-get install -y packages`` as root (or through ``sudo -n``);
    None when done, else why not, in one line."""
    apt = shutil.which("apt-get")
    if apt is None:
        return f"no apt-get to install {', '.join(packages)}"
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        return f"installing {', '.join(packages)} needs root (apt-get) and there is no sudo"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with apt_lock():
        for args in (["update", "-qq"], ["install", "-y", "-qq", *packages]):
            try:
                done = subprocess.run(
                    [*sudo, apt, *args], env=env, capture_output=True, text=True, timeout=timeout
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"apt-get {args[0]} failed: {exc}"
            if done.returncode != 0:
                last = ((done.stderr or done.stdout).strip().splitlines() or ["?"])[-1]
                return f"apt-get {args[0]} failed ({done.returncode}): {last}"
    return None
