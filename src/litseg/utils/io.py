"""Small file helpers: writes that never leave a half-written file behind."""

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give (0o666 less the umask); mkstemp's
    private 0o600 would hide summaries and checkpoints from the user's group."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it into place.

    The temporary file sits in the target's own folder, so the rename is atomic on every
    filesystem; on any failure it is removed and the previous file at ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def finite_or_none(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by None (strict JSON has neither)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_or_none(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite_or_none(v) for v in data]
    return data


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as indented, strict JSON (non-finite numbers become null)."""
    text = json.dumps(finite_or_none(data), indent=2, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")
