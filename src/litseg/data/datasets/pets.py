"""Oxford-IIIT Pet trimaps through torchvision: binary (pet vs background) or 3-class.

    root/oxford-iiit-pet/images/*.jpg
    root/oxford-iiit-pet/annotations/trimaps/*.png   1 pet, 2 background, 3 border
    root/oxford-iiit-pet/annotations/{trainval,test}.txt

The official trainval list is split into train and val by ``val_fraction`` with a fixed seed;
test is the official test list.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from litseg.data.datasets.paired import PairedFilesDataset
from litseg.data.datasets.torchvision_source import open_source
from litseg.data.splits import fraction_split
from litseg.errors import ConfigError

LAYOUT = "oxford-iiit-pet/{images,annotations/trimaps,annotations/trainval.txt}"


class PetsDataset(PairedFilesDataset):
    """One split of Oxford-IIIT Pet segmentation.

    Args:
        root: the folder that holds (or will hold) oxford-iiit-pet/.
        split: train, val (both from trainval) or test.
        task: binary (1 = pet or border, 0 = background) or multiclass (0 pet,
            1 background, 2 border, as the trimaps number them).
        val_fraction, seed: the share of trainval that becomes val, picked with a fixed seed.
        download: fetch the dataset (about 800 MB) when it is missing.
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
        num_classes: from the data config (1 for binary, 3 for multiclass; the class names
            are in conf/data/pets.yaml).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        task: str = "binary",
        val_fraction: float = 0.1,
        seed: int = 0,
        download: bool = False,
        transform: Callable[..., dict[str, Any]] | None = None,
        *,
        num_classes: int,
    ) -> None:
        from torchvision.datasets import OxfordIIITPet

        if split not in ("train", "val", "test"):
            raise ConfigError(f"data split {split!r}; pets has train, val and test")
        if task not in ("binary", "multiclass"):
            raise ConfigError(f"data.task={task!r}; pets supports binary or multiclass")
        source = open_source(
            OxfordIIITPet,
            "Oxford-IIIT Pet",
            Path(root),
            LAYOUT,
            download,
            split="test" if split == "test" else "trainval",
            target_types="segmentation",
        )
        pairs = list(zip(source._images, source._segs, strict=True))
        if split != "test":
            pairs = [pairs[i] for i in fraction_split(len(pairs), split, val_fraction, seed)]
        self.task = task
        super().__init__(
            pairs,
            num_classes=num_classes,
            in_channels=3,
            transform=transform,
            where=f"{root}/oxford-iiit-pet ({split})",
        )

    def read_mask(self, path: Path) -> np.ndarray:
        """Trimap values 1, 2, 3 -> pet/background/border classes (or pet vs rest)."""
        trimap = super().read_mask(path) - 1
        return (trimap != 1).astype(np.int64) if self.task == "binary" else trimap
