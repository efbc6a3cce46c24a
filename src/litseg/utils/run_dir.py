"""Guard run directories: a folder that already holds a run is never written over."""

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from litseg.errors import RunDirExistsError

# Files Hydra writes when it starts a job; their presence means a run already started here.
RUN_MARKERS = (".hydra", "checkpoints", "summary.json", "csv")


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


class RefuseExistingRunDir(Callback):
    """Hydra callback: stop before Hydra writes anything into a folder that holds a run."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        if holds_run(run_dir) and not _is_child_process():
            _refuse(
                RunDirExistsError(
                    f"hydra.run.dir={run_dir} already holds a run; refusing to overwrite it. "
                    "Choose another hydra.run.dir or remove that folder yourself."
                )
            )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir() and any(holds_run(p) for p in sweep_dir.iterdir()):
            _refuse(
                RunDirExistsError(
                    f"hydra.sweep.dir={sweep_dir} already holds runs; refusing to overwrite them. "
                    "Choose another hydra.sweep.dir."
                )
            )
