"""Guard run directories: a folder that already holds a run is never written over.

A run claims its folder before Hydra writes anything there, by creating a marker file with
``O_CREAT | O_EXCL``: of several processes started at once with one ``hydra.run.dir``, the
file system lets exactly one create it, and the others are refused (exit status 2). A
multirun claims its sweep folder the same way, by creating ``multirun.yaml`` exclusively
(Hydra's basic sweeper then writes the sweep's config over it). DDP ranks > 0 join rank 0's
folder and claim nothing.
"""

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from litseg.errors import RunDirExistsError

# The file whose exclusive creation makes a folder this run's own.
CLAIM = ".litseg-claim"
# The sweep folder's claim: Hydra's basic sweeper writes the multirun config there later.
SWEEP_CLAIM = "multirun.yaml"
# Files Hydra and litseg write when a job starts; their presence means a run already started.
RUN_MARKERS = (CLAIM, ".hydra", "checkpoints", "summary.json", "csv")


def holds_run(path: Path) -> bool:
    """True when ``path`` already contains a litseg/Hydra run."""
    return path.is_dir() and any((path / marker).exists() for marker in RUN_MARKERS)


# Rank variables of Lightning's launcher, torchrun and SLURM (srun starts one task per rank).
RANK_VARS = ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID")


def _is_child_process() -> bool:
    # Ranks > 0 (Lightning's DDP workers, torchrun, srun tasks) join rank 0's run directory.
    return any(os.environ.get(var, "0") not in ("", "0") for var in RANK_VARS)


def _refuse(error: RunDirExistsError) -> None:
    # Hydra turns exceptions raised in callbacks into warnings; only an exit stops the run.
    print(f"litseg: error: {error}", file=sys.stderr)
    raise SystemExit(2)


def claim_text() -> str:
    """Who claims a folder: pid, host and time, one line."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"claimed by litseg pid {os.getpid()} on {socket.gethostname()} at {stamp}"


def claim(marker: Path, content: str | None = None) -> str | None:
    """Create ``marker`` (and its folder) atomically; ``None`` when this process made it.

    Otherwise the marker already existed: return what it says about its owner ("" when the
    owner has not written it yet). ``content`` defaults to :func:`claim_text`.
    """
    marker.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return claimant(marker)
    with os.fdopen(fd, "w") as f:
        f.write((content if content is not None else claim_text()) + "\n")
    return None


def claimant(marker: Path) -> str:
    """The first line of ``marker`` (who claimed the folder), or "" when there is none."""
    try:
        return marker.read_text(errors="replace").strip().splitlines()[0]
    except (OSError, IndexError):
        return ""


def _owner(found: str) -> str:
    # " (claimed by litseg pid ... at ...)" when the marker says who made it
    return f" ({found[found.index('claimed by') :]})" if "claimed by" in found else ""


class RefuseExistingRunDir(Callback):
    """Hydra callback: claim the run (or sweep) folder before Hydra writes anything there,
    and stop when it holds a run or another process claimed it first."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Claim ``hydra.run.dir`` (rank 0 only); exit 2 when it is taken."""
        if _is_child_process():
            return
        run_dir = Path(config.hydra.run.dir)
        marker = run_dir / CLAIM
        taken = claimant(marker) if holds_run(run_dir) else claim(marker)
        if taken is not None:
            _refuse(
                RunDirExistsError(
                    f"hydra.run.dir={run_dir} already holds a run{_owner(taken)}; refusing to "
                    "overwrite it. Choose another hydra.run.dir or remove that folder yourself."
                )
            )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Claim ``hydra.sweep.dir``; exit 2 when it holds runs or another sweep claimed it."""
        sweep_dir = Path(config.hydra.sweep.dir)
        marker = sweep_dir / SWEEP_CLAIM
        if sweep_dir.is_dir() and any(holds_run(p) for p in sweep_dir.iterdir()):
            taken: str | None = claimant(marker)
        else:
            taken = claim(marker, f"# {claim_text()}\n{OmegaConf.to_yaml(config)}")
        if taken is not None:
            _refuse(
                RunDirExistsError(
                    f"hydra.sweep.dir={sweep_dir} already holds runs{_owner(taken)}; refusing "
                    "to overwrite them. Choose another hydra.sweep.dir."
                )
            )
