"""Mid-epoch resume: a run stopped inside an epoch and resumed with ckpt_path=last ends exactly
where an uninterrupted run ends (final metrics and weights within 1e-5).

Why the two can agree: the training loader (litseg.data.resumable) orders each epoch by
(seed, epoch), seeds each sample's augmentation by (seed, epoch, position), stores how many
batches of the epoch it has handed out in the checkpoint and, on resume, starts after them;
it draws nothing from the global random generators, whose state the checkpoint restores
(RngStateInCheckpoint). So the resumed run trains on the same remaining batches, with the same
augmentations, from the same weights, optimizer state and random state. The runs here use
augmentation (augment=basic) so that a wrong order or a re-drawn augmentation would show.

What is not compared: the interrupted epoch's epoch-averaged train/loss covers only the
steps after the resume (Lightning keeps no logged-metric state in checkpoints), so the stop
is placed in an epoch before the last and the last epoch's metrics are compared.
"""

import itertools
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from litseg.builders import build_datamodule
from litseg.data.resumable import EpochSampler, ResumableLoader, SeededSamples
from tests.helpers import TINY, run_cli, start_cli

TASK = "mid_epoch"
EPOCHS = 3
BATCHES_PER_EPOCH = 8  # 64 training images, batch 8, drop_last
ARGS = [
    *TINY,
    "data.splits.train.length=64",
    "augment=basic",
    "trainer=cpu",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.deterministic=true",
    "callbacks.rich_progress_bar=null",
    "callbacks.early_stopping=null",
    "callbacks.model_checkpoint.last_every_n_train_steps=2",
    "test=false",
    f"task_name={TASK}",
]
COMPARED = ("val/loss", "val/mIoU", "val/dice", "val/pixel_acc", "train/loss_epoch")


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _mid_epoch(step: int) -> bool:
    """A step inside an epoch before the last (not an epoch's first or last batch)."""
    return step % BATCHES_PER_EPOCH != 0 and step < (EPOCHS - 1) * BATCHES_PER_EPOCH


def _stop_at_a_mid_epoch_checkpoint(args: list[str], run: Path, signum: int) -> int:
    """Start a run; when its last.ckpt is a mid-epoch one, freeze it (SIGSTOP) and either kill
    it hard (SIGKILL: the checkpoint is what is left) or send ``signum`` and let StopOnSignal
    save the step it stops at. Returns the process's exit code."""
    proc = start_cli("train.py", *args, f"hydra.run.dir={run}", stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.ckpt"
    seen = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            stamp = last.stat().st_mtime_ns if last.exists() else None
            if stamp is None or stamp == seen:
                time.sleep(0.02)
                continue
            os.kill(proc.pid, signal.SIGSTOP)  # a renamed file is complete: safe to read
            seen = last.stat().st_mtime_ns
            if _mid_epoch(_checkpoint(last)["global_step"]):
                os.kill(proc.pid, signum)
                os.kill(proc.pid, signal.SIGCONT)
                return proc.wait(timeout=240)
            os.kill(proc.pid, signal.SIGCONT)
        raise AssertionError("the run ended before a mid-epoch checkpoint was seen")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _assert_same_end(resumed: Path, full: Path) -> None:
    summary, expected = _summary(resumed), _summary(full)
    assert summary["status"] == "completed" and summary["epochs"] == expected["epochs"] == EPOCHS
    assert summary["global_step"] == expected["global_step"] == EPOCHS * BATCHES_PER_EPOCH
    for key in COMPARED:
        assert summary["metrics"][key] == pytest.approx(expected["metrics"][key], rel=1e-5), key
    weights = _checkpoint(resumed / "checkpoints" / "last.ckpt")["state_dict"]
    reference = _checkpoint(full / "checkpoints" / "last.ckpt")["state_dict"]
    assert weights.keys() == reference.keys()
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-6, msg=name)


def _run_stopped_and_resumed(tmp_path: Path, extra: list[str], signum: int) -> None:
    args = [*ARGS, *extra]
    full = tmp_path / "full"
    proc = run_cli("train.py", *args, f"hydra.run.dir={full}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    logs = tmp_path / "logs"
    stopped = logs / TASK / "runs" / "stopped"
    code = _stop_at_a_mid_epoch_checkpoint([*args, f"paths.log_dir={logs}"], stopped, signum)
    expected_code = -signal.SIGKILL if signum == signal.SIGKILL else 128 + signum
    assert code == expected_code
    stop = _checkpoint(stopped / "checkpoints" / "last.ckpt")
    step = stop["global_step"]
    assert step % BATCHES_PER_EPOCH != 0, f"stopped at step {step}, an epoch boundary"
    # the loader's own record of the epoch is in the checkpoint and agrees with the step
    (data_state,) = stop["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert data_state["epoch"] == step // BATCHES_PER_EPOCH
    assert data_state["batches"] == step % BATCHES_PER_EPOCH

    proc = run_cli("train.py", *args, f"paths.log_dir={logs}", "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = next(p for p in (logs / TASK / "runs").iterdir() if p != stopped)
    assert _summary(resumed)["resumed_from"] == str(stopped / "checkpoints" / "last.ckpt")
    _assert_same_end(resumed, full)


@pytest.mark.slow
def test_hard_kill_after_a_step_checkpoint_resumes_exactly(tmp_path: Path) -> None:
    _run_stopped_and_resumed(tmp_path, [], signal.SIGKILL)


@pytest.mark.slow
def test_sigterm_mid_epoch_with_a_worker_resumes_exactly(tmp_path: Path) -> None:
    _run_stopped_and_resumed(tmp_path, ["data.num_workers=1"], signal.SIGTERM)


def _images(loader, batches: int | None = None) -> list[torch.Tensor]:
    """The images of the next ``batches`` batches (all: None), fetching no batch more."""
    return [batch["image"] for batch in itertools.islice(loader, batches)]


@pytest.mark.parametrize("workers", [0, 1])
def test_the_loader_resumes_inside_an_epoch_with_the_same_batches(make_cfg, workers) -> None:
    cfg = make_cfg("augment=basic", f"data.num_workers={workers}", "data.splits.train.length=40")
    dm = build_datamodule(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableLoader) and isinstance(loader.sampler, EpochSampler)
    loader.sampler.set_epoch(2)
    whole = _images(loader)
    assert len(whole) == len(loader) == 5
    # augmentations depend on (seed, epoch, position) only: a second pass is the same ...
    for a, b in zip(_images(loader), whole, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # ... and another epoch is another order
    loader.sampler.set_epoch(3)
    assert not torch.equal(_images(loader, 1)[0], whole[0])

    # stop after two batches of epoch 2, then a fresh loader continues from the third
    loader.sampler.set_epoch(2)
    assert len(_images(loader, 2)) == 2
    state = loader.state_dict()
    assert (state["epoch"], state["batches"]) == (2, 2)
    fresh = build_datamodule(cfg)
    fresh.setup("fit")
    again = fresh.train_dataloader()
    again.load_state_dict(state)
    again.sampler.set_epoch(2)  # Lightning sets the epoch before the first batch
    rest = _images(again)
    assert len(rest) == 3
    for a, b in zip(rest, whole[2:], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert again.state_dict()["batches"] == 5
    # the resume applies to that epoch only: the next pass is a whole epoch
    again.sampler.set_epoch(3)
    assert len(_images(again)) == 5


def test_loader_state_from_a_checkpoint_is_checked_as_data(make_cfg) -> None:
    dm = build_datamodule(make_cfg())
    dm.setup("fit")
    loader = dm.train_dataloader()
    good = {"epoch": 1, "batches": 2, "seed": 7, "batch_size": 8, "num_replicas": 1, "length": 32}
    for bad in ({**good, "batches": "2"}, {**good, "seed": -1}, {"epoch": 1}):
        loader.load_state_dict(bad)
        loader.sampler.set_epoch(1)
        assert len(_images(loader)) == 4  # ignored: the epoch restarts
    # another batch size (or data, or process count): the epoch restarts, the seed is kept
    loader.load_state_dict({**good, "batch_size": 4})
    loader.sampler.set_epoch(1)
    assert len(_images(loader)) == 4 and loader.sampler.seed == 7


def test_samples_are_seeded_by_their_key_and_leave_the_global_random_state_alone() -> None:
    class Draw:
        """A pipeline stand-in: draws from the generator it is given, as albumentations does."""

        def set_random_state(self, generator, py_random) -> None:
            self.generator = generator

    class Noisy(torch.utils.data.Dataset):
        transform = Draw()

        def __len__(self) -> int:
            return 6

        def __getitem__(self, index: int) -> float:
            return float(self.transform.generator.random())

    data = SeededSamples(Noisy())
    torch.manual_seed(0)
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    assert data[(3, (7, 1, 11))] == data[(5, (7, 1, 11))]
    assert data[(3, (7, 1, 11))] not in (data[(3, (7, 1, 12))], data[(3, (7, 2, 11))])
    after = torch.get_rng_state(), np.random.get_state()[1], random.getstate()
    assert torch.equal(after[0], before[0]) and (after[1] == before[1]).all()
    assert after[2] == before[2]
    # every position of an epoch once per rank share, and the two ranks' shares disjoint
    ranks = [EpochSampler(range(10), seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    shares = [[i for i, _ in sampler] for sampler in ranks]
    assert sorted(shares[0] + shares[1]) == list(range(10))
    keys = [key for sampler in ranks for _, key in sampler]
    assert sorted(position for _, _, position in keys) == list(range(10))


def test_a_stop_signal_waits_for_the_optimizer_step_under_gradient_accumulation(
    make_cfg, tmp_path: Path
) -> None:
    from lightning import Callback, Trainer

    from litseg.builders import build_module
    from litseg.callbacks import ResumableModelCheckpoint
    from litseg.errors import RunInterrupted
    from litseg.run_stops import StopOnSignal

    class SignalAtFirstBatch(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 0:
                os.kill(os.getpid(), signal.SIGTERM)

    cfg = make_cfg("augment=none")
    checkpoint = ResumableModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        accumulate_grad_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[SignalAtFirstBatch(), StopOnSignal(), checkpoint],
    )
    with pytest.raises(RunInterrupted, match="SIGTERM received: stopped at step 1"):
        trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    # the signal came during the first batch; the stop waited for the second (the step)
    saved = _checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert saved["global_step"] == 1
    (data_state,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert data_state["batches"] == 2
