"""Debian packages a test needs (SLURM, PostgreSQL, Chromium), installed on a fresh machine.

``apt-get`` takes its own locks and fails when another apt-get holds them, so tests that run
side by side (``pytest -n``) install one at a time under :func:`apt_lock`.
"""

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.slurm_cluster import ClusterError, install_packages

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
    """Install Debian packages under the tests' apt lock (with their recommended packages);
    None when done, else why not, in one line."""
    with apt_lock():
        try:
            install_packages(packages, timeout=timeout, recommends=True)
        except ClusterError as exc:
            return str(exc)
    return None
