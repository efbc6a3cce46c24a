"""Checkpoint writes are atomic: a full disk leaves every earlier checkpoint readable.

The disk is a real tmpfs the test mounts (skipped, with the reason, where mounting is not
allowed: it needs root or CAP_SYS_ADMIN).
"""

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from litseg.checkpoint_io import AtomicCheckpointIO
from litseg.errors import CheckpointWriteError
from tests.helpers import TINY, start_cli


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted for the test (room for the tiny run's first checkpoints)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the disk is full."""
    filler = folder / "filler.bin"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_failed_write_keeps_the_previous_checkpoint(small_disk: Path) -> None:
    io = AtomicCheckpointIO()
    target = small_disk / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(1000.0)}}, target)
    fill(small_disk)
    with pytest.raises(CheckpointWriteError, match=r"last\.ckpt: No space left on device"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(100_000)}}, target)
    kept = torch.load(target, weights_only=True)
    assert torch.equal(kept["state_dict"]["w"], torch.arange(1000.0))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temp file left


def test_the_temp_file_is_written_beside_the_target(tmp_path: Path) -> None:
    seen: list[list[str]] = []
    original = torch.save

    def look_then_save(obj, f, *args, **kwargs):  # what the folder holds while saving
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return original(obj, f, *args, **kwargs)

    torch.save = look_then_save
    try:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "a.ckpt")
    finally:
        torch.save = original
    (during,) = seen
    assert len(during) == 1 and during[0].startswith(".a.ckpt.") and during[0].endswith(".tmp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ckpt"]
    assert torch.load(tmp_path / "a.ckpt", weights_only=True) == {"state_dict": {}}


@pytest.mark.slow
def test_training_on_a_full_disk_stops_with_one_line_and_readable_checkpoints(
    small_disk: Path,
) -> None:
    run = small_disk / "run"
    args = [
        *TINY,
        "trainer=cpu",
        "trainer.max_epochs=6",
        "callbacks.rich_progress_bar=null",
        "callbacks.early_stopping=null",
        "test=false",
        f"hydra.run.dir={run}",
    ]
    proc = start_cli("train.py", *args)
    last = run / "checkpoints" / "last.ckpt"

    seen: list[bool] = []

    def fill_after_first_checkpoint() -> None:
        while proc.poll() is None and not last.exists():
            time.sleep(0.02)
        seen.append(last.exists())
        fill(small_disk)

    filler = threading.Thread(target=fill_after_first_checkpoint)
    filler.start()
    _, stderr = proc.communicate(timeout=300)
    filler.join()
    assert seen == [True], "the run ended before its first checkpoint"
    assert proc.returncode == 2, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("litseg:")]
    assert len(lines) == 1 and "could not write checkpoint" in lines[0], stderr[-3000:]
    assert "No space left on device" in lines[0]
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        torch.load(ckpt, weights_only=True)  # every checkpoint left behind is complete
    assert last.exists()
    assert not list((run / "checkpoints").glob(".*.tmp"))
