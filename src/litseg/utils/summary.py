"""The short summary every run directory holds: metrics, duration, versions, git commit."""

import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from litseg.utils.io import atomic_write_json


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current commit (with ``-dirty`` when the tree has changes), or None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import albumentations
    import hydra
    import lightning
    import torchmetrics
    import torchvision

    import litseg

    return {
        "python": platform.python_version(),
        "litseg": litseg.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "torchmetrics": torchmetrics.__version__,
        "hydra": hydra.__version__,
        "albumentations": albumentations.__version__,
    }


def to_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats from tensors and numbers, so the summary is readable JSON."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        out[key] = float(value)
    return out


def write_summary(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Write the run summary (given fields + versions, git commit, host) atomically."""
    summary = {
        **fields,
        "versions": library_versions(),
        "git_commit": git_commit(Path(__file__).parent),
        "host": {
            "machine": platform.machine(),
            "cpus": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
    }
    atomic_write_json(path, summary)
    return summary
