"""Checkpoint files that are either complete or absent, never half-written."""

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from litseg.errors import CheckpointWriteError
from litseg.utils.io import default_file_mode, fsync_dir


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file beside its target, fsync it, rename it.

    The temporary file lives in the target's own folder, so the rename is atomic on every
    filesystem (Lightning's default stages in $TMPDIR and copies across). A failed write
    (disk full, permission) removes the temporary file, leaves every earlier checkpoint as
    it was, and raises CheckpointWriteError naming the file and the reason; ModelCheckpoint
    removes a superseded file only after the new one is in place.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        path = Path(path)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            # serialised in memory first: a failing file write then raises OSError with the
            # reason (torch.save straight into a full disk fails with an opaque RuntimeError)
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            os.fchmod(fd, default_file_mode())
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
            fsync_dir(path.parent)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise CheckpointWriteError(
                f"could not write checkpoint {path}: {reason}; the earlier checkpoints "
                f"in {path.parent} are kept as they were"
            ) from exc
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
