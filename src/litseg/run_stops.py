"""Callbacks that end a run early without losing it: stop signals and a diverging loss.

Both raise a RunStopped exception that train.py turns into a summary with a status
(``interrupted`` or ``diverged``) and a non-zero exit code.
"""

import atexit
import logging
import os
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from litseg.errors import ConfigError, RunInterrupted, TrainingDiverged

log = logging.getLogger(__name__)


def last_checkpoint_callback(trainer: Trainer) -> Any:
    """The checkpoint callback that can write ``last.ckpt`` now (ResumableModelCheckpoint)."""
    return next((c for c in trainer.checkpoint_callbacks if hasattr(c, "save_last_now")), None)


class StopOnSignal(Callback):
    """SIGTERM, SIGINT or SIGUSR1 during training: checkpoint the current step, then stop.

    The signal only sets a flag; the next training step (with gradient accumulation, the next
    optimizer step), validation end or epoch end writes ``last.ckpt`` (the state after the
    last completed step) and raises RunInterrupted, so the run exits non-zero with a summary
    marked ``interrupted``.
    ``ckpt_path=last`` or ``ckpt_path=auto`` resumes from that checkpoint. Under SLURM a
    SIGUSR1 (``--signal=USR1@N``) also requeues the job, as Lightning's SLURM support does.
    A second SIGINT (Ctrl-C twice) stops at once, without a checkpoint.

    Args:
        signals: names of the signals to catch.
        requeue_on_slurm: requeue the SLURM job on SIGUSR1.
    """

    def __init__(
        self,
        signals: tuple[str, ...] | list[str] = ("SIGTERM", "SIGINT", "SIGUSR1"),
        requeue_on_slurm: bool = True,
    ) -> None:
        unknown = [s for s in signals if not hasattr(signal, str(s))]
        if unknown:
            raise ConfigError(f"callbacks.stop_on_signal.signals: unknown signal(s) {unknown}")
        self.signals = [getattr(signal, str(s)) for s in signals]
        self.requeue_on_slurm = requeue_on_slurm
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.received == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.received = signum

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after Lightning's own SIGTERM/SIGUSR1 handlers, which these replace during fit
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _stop_if_signalled(self, trainer: Trainer) -> None:
        signalled = self.received is not None
        if trainer.world_size > 1:
            signalled = trainer.strategy.reduce_boolean_decision(signalled, all=False)
        if not signalled:
            return
        signum = self.received or signal.SIGTERM
        name = signal.Signals(signum).name
        checkpoint = last_checkpoint_callback(trainer)
        saved = checkpoint.save_last_now(trainer) if checkpoint is not None else None
        if signum == signal.SIGUSR1 and self.requeue_on_slurm and trainer.is_global_zero:
            requeue_slurm_job_at_exit()
        where = f"saved {saved}" if saved else "no checkpoint callback, nothing saved"
        raise RunInterrupted(
            f"{name} received: stopped at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}); {where}; resume with ckpt_path=last or ckpt_path=auto",
            signum,
        )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # only where the optimizer has just stepped: a checkpoint between gradient-accumulation
        # steps would lose the accumulated gradients, and the resumed run would differ
        done = batch_idx + 1
        if done % trainer.accumulate_grad_batches and done < trainer.num_training_batches:
            return
        self._stop_if_signalled(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._stop_if_signalled(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop_if_signalled(trainer)


_requeue_registered = False


def requeue_slurm_job_at_exit() -> None:
    """Requeue this SLURM job as the process exits (once), not at once: a requeue ends the
    running job with SIGTERM, which must not find the run still writing its summary."""
    global _requeue_registered
    if not _requeue_registered:
        atexit.register(_requeue_slurm_job)
        _requeue_registered = True


def _requeue_slurm_job() -> None:
    """``scontrol requeue`` this SLURM job (array jobs included), when inside one."""
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    if not job:
        return
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, timeout=30)
        if result.returncode == 0:
            log.info("Requeued SLURM job %s", job)
        else:
            log.warning("scontrol requeue %s failed: %s", job, result.stderr.decode().strip())
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("scontrol requeue %s failed: %s", job, exc)


class StopOnNonFiniteLoss(Callback):
    """Stop training when the loss has been non-finite ``patience`` times.

    SegmentationModule never applies a step whose loss is NaN or infinite, so the weights,
    ``last.ckpt`` and the best checkpoint stay finite; this raises TrainingDiverged naming
    the step, and train.py exits non-zero with a summary marked ``diverged``.

    Args:
        patience: how many non-finite losses (skipped steps) end the run; 1 stops at the first.
    """

    def __init__(self, patience: int = 1) -> None:
        if not isinstance(patience, int) or patience < 1:
            raise ConfigError(
                f"callbacks.stop_on_nonfinite_loss.patience={patience!r}; expected an integer >= 1"
            )
        self.patience = patience

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        skipped = getattr(pl_module, "nonfinite_steps", [])
        if len(skipped) >= self.patience:
            step, value = skipped[-1]
            raise TrainingDiverged(
                f"training diverged: loss {value} at step {step} (epoch {trainer.current_epoch}), "
                f"{len(skipped)} non-finite loss(es) in all; lower optimizer.lr or set "
                "trainer.gradient_clip_val; no non-finite state was checkpointed"
            )
