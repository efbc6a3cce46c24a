"""Opening a torchvision dataset only to find (and, where allowed, download) its files.

The pairs it lists are then read by :class:`PairedFilesDataset`, so every source shares the
same readers, checks and clear errors; offline, a missing dataset says how to point
``data.root`` at a local copy instead of failing inside torchvision.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.error import URLError

from litseg.errors import DataError

T = TypeVar("T")


def open_source(
    factory: Callable[..., T], name: str, root: Path, layout: str, download: bool, **kwargs: Any
) -> T:
    """``factory(root=..., download=..., **kwargs)`` with its failures turned into DataErrors.

    Args:
        factory: the torchvision dataset class.
        name: the dataset's name in messages.
        root: ``data.root``.
        layout: the folders expected under ``data.root``, for the message.
        download: ``data.download``: fetch the files when they are missing.
    """
    try:
        return factory(root=str(root), download=download, **kwargs)
    except (URLError, OSError, TimeoutError) as err:
        if not download:
            raise DataError(
                f"{name} files under data.root={root} are unreadable ({err}); expected {layout}"
            ) from None
        raise DataError(
            f"downloading {name} into data.root={root} failed ({err}); offline, "
            f"download it elsewhere and set data.root to a folder holding "
            f"{layout} (with data.download=false)"
        ) from None
    except RuntimeError as err:
        hint = "" if download else " or set data.download=true to fetch it"
        raise DataError(
            f"{name} not found under data.root={root} ({err}); expected {layout}; "
            f"set data.root=/path/to/a/local/copy{hint}"
        ) from None
