"""PASCAL VOC 2012 segmentation through torchvision: 21 classes, 255 (object borders) ignored
(names and ignore index in conf/data/voc.yaml, handed over by the datamodule).

root/VOCdevkit/VOC2012/JPEGImages/*.jpg
root/VOCdevkit/VOC2012/SegmentationClass/*.png      palette PNGs (index = class)
root/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from litseg.data.datasets.paired import PairedFilesDataset
from litseg.data.datasets.torchvision_source import open_source
from litseg.errors import ConfigError

LAYOUT = "VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/{train,val}.txt}"


class VOCDataset(PairedFilesDataset):
    """One split (train or val) of VOC 2012 segmentation.

    Args:
        root: the folder that holds (or will hold) VOCdevkit/.
        split: train or val.
        download: fetch VOCtrainval_11-May-2012.tar (about 2 GB) when it is missing.
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
        num_classes, ignore_index: from the data config (21 and 255).
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
        from torchvision.datasets import VOCSegmentation

        if split not in ("train", "val"):
            raise ConfigError(f"data split {split!r}; VOC 2012 has train and val")
        source = open_source(
            VOCSegmentation,
            "PASCAL VOC 2012",
            Path(root),
            LAYOUT,
            download,
            year="2012",
            image_set=split,
        )
        super().__init__(
            list(zip(source.images, source.targets, strict=True)),
            num_classes=num_classes,
            ignore_index=ignore_index,
            in_channels=3,
            transform=transform,
            where=f"{root}/VOCdevkit/VOC2012 ({split})",
        )
