"""Make Lightning's DDP launcher start its worker processes for *this* job.

Lightning starts ranks > 0 by re-running ``sys.argv`` with ``hydra.run.dir=<run dir>``. In a
Hydra multirun ``sys.argv`` still holds ``-m`` and the whole sweep (``loss=dice,dice_ce``),
so each worker would start a sweep of its own in new folders. Before fitting, litseg
rewrites ``sys.argv`` into the single run this process is doing, and points Hydra's run dir
at this job's folder, which is what Lightning passes on. After the job it closes the process
group and restores the environment Lightning changed, so the next job of the sweep starts
its own workers instead of talking to the last job's (exited) ones.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict, read_write

MULTIRUN_FLAGS = ("-m", "--multirun")
# what Lightning's launcher and DDP setup write into the launching process's environment
DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK", "RANK")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def job_command_line(argv: list[str], overrides: list[str], replace: dict[str, str]) -> list[str]:
    """``argv`` as one plain run: no multirun flag, the job's own overrides, ``replace`` applied.

    Flags and their values (``--config-name x``) are kept; every ``key=value`` of the original
    command line is replaced by the job's overrides, so swept values appear once, resolved.
    """
    keep = [a for a in argv[1:] if a not in MULTIRUN_FLAGS and ("=" not in a or a.startswith("-"))]
    job = [o for o in overrides if _key(o) not in replace]
    job += [f"{key}={value}" for key, value in replace.items()]
    # a config may switch multirun on (hparams_search=optuna sets hydra.mode): workers run once
    return [argv[0], *keep, *job, "hydra.mode=RUN"]


def prepare_worker_launch(run_dir: Path, replace: dict[str, str] | None = None) -> None:
    """Rewrite ``sys.argv`` and Hydra's run dir so DDP workers join this job in ``run_dir``.

    ``replace`` sets overrides for the workers, e.g. a resolved ``ckpt_path``. A no-op outside
    Hydra and in worker processes themselves.
    """
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = job_command_line(sys.argv, list(hydra_cfg.overrides.task), replace or {})
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = str(run_dir)


@contextmanager
def distributed_job(
    launches_workers: bool, run_dir: Path, replace: dict[str, str] | None = None
) -> Iterator[None]:
    """Around one job's fit/test: prepare the workers' command line, clean up afterwards.

    With ``launches_workers`` false (one process, or processes started by SLURM/torchrun) it
    only closes the process group at the end, so a later job in the same process can open one.
    """
    argv, env = list(sys.argv), {key: os.environ.get(key) for key in DIST_ENV}
    if launches_workers:
        prepare_worker_launch(run_dir, replace)
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        if launches_workers:
            sys.argv = argv
            for key, value in env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
