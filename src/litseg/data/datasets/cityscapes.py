"""Cityscapes (fine annotations) through torchvision: 19 train-id classes, 255 ignored
(names, colours and ignore index in conf/data/cityscapes.yaml, handed over by the datamodule).

    root/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png
    root/gtFine/{train,val}/<city>/*_gtFine_labelIds.png

Cityscapes needs a login, so it is never downloaded: fetch leftImg8bit_trainvaltest.zip
and gtFine_trainvaltest.zip from https://www.cityscapes-dataset.com and set data.root.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets import Cityscapes

from litseg.data.datasets.paired import PairedFilesDataset
from litseg.data.datasets.torchvision_source import open_source
from litseg.errors import ConfigError

LAYOUT = (
    "leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and "
    "gtFine/{train,val}/<city>/*_gtFine_labelIds.png (or the two *_trainvaltest.zip)"
)


def train_id_table(ignore_index: int) -> np.ndarray:
    """A 256-entry lookup from Cityscapes label ids to the 19 train ids (others ->
    ``ignore_index``)."""
    table = np.full(256, ignore_index, dtype=np.int64)
    for cls in Cityscapes.classes:
        if 0 <= cls.id < 256 and 0 <= cls.train_id < 255:
            table[cls.id] = cls.train_id
    return table


def _cityscapes(root: str, download: bool, **kwargs: Any) -> Cityscapes:
    """torchvision's Cityscapes takes no download argument (it is never downloadable)."""
    return Cityscapes(root, **kwargs)


class CityscapesDataset(PairedFilesDataset):
    """One split (train or val) of Cityscapes with fine semantic labels as train ids.

    Args:
        root: the folder holding leftImg8bit/ and gtFine/ (or their zip files).
        split: train or val (the test labels are not public).
        download: must stay false; Cityscapes needs a login to download.
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
        num_classes, ignore_index: from the data config (19, and 255: label ids without a
            train id become it).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        download: bool = False,
        transform: Callable[..., dict[str, Any]] | None = None,
        *,
        num_classes: int,
        ignore_index: int | None,
    ) -> None:
        if split not in ("train", "val"):
            raise ConfigError(f"data split {split!r}; Cityscapes has labelled train and val")
        if download:
            raise ConfigError(
                "data.download=true but Cityscapes needs a login: download "
                "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
                "https://www.cityscapes-dataset.com and set data.root to their "
                "folder, with data.download=false"
            )
        source = open_source(
            _cityscapes,
            "Cityscapes",
            Path(root),
            LAYOUT,
            False,
            split=split,
            mode="fine",
            target_type="semantic",
        )
        pairs = [
            (image, targets[0] if isinstance(targets, list) else targets)
            for image, targets in zip(source.images, source.targets, strict=True)
        ]
        if ignore_index is None:
            raise ConfigError(
                "data.ignore_index=null but Cityscapes has pixels without a train id; "
                "set data.ignore_index (conf/data/cityscapes.yaml uses 255)"
            )
        self.table = train_id_table(ignore_index)
        super().__init__(
            pairs,
            num_classes=num_classes,
            ignore_index=ignore_index,
            in_channels=3,
            transform=transform,
            where=f"{root}/leftImg8bit/{split}",
        )

    def read_mask(self, path: Path) -> np.ndarray:
        """Label ids -> train ids (0..18, 255 ignored)."""
        return self.table[np.clip(super().read_mask(path), 0, 255)]
