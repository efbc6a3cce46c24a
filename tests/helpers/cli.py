"""The repository's scripts run in a subprocess from the repository root, as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.configs import ROOT


def run_cli(
    script: str, *args: str, cwd: Path = ROOT, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python <script> args...`` from the repository root as a user would."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(script: str, *args: str, stderr: int = -1) -> subprocess.Popen[str]:
    """Start ``python <script> args...`` from the repository root without waiting (for tests
    that signal, kill or race a run); stdout is dropped, stderr piped as text by default."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
