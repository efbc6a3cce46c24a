"""ISBI 2012 neuronal membranes (electron microscopy), binary, as in the U-Net paper.

    root/image/{0..29}.png   grayscale slices of one volume
    root/label/{0..29}.png   0 = membrane, 255 = cell interior

Neighbouring slices are correlated, so splits are contiguous blocks of slices: the slices
are cut into ``num_folds`` blocks and block ``fold`` is the validation split. The challenge's
test labels are not public; labelled slices of your own in root/test/{image,label} form the
test split when that folder exists.
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from litseg.data.checks import pairs_in_folders
from litseg.data.datasets.paired import PairedFilesDataset
from litseg.data.encoding import MEMBRANE_VALUES
from litseg.errors import ConfigError, DataError

SOURCE = "https://github.com/zhixuhao/unet (data/membrane) or the ISBI 2012 challenge site"


def _slice_key(stem: str) -> tuple[int, str]:
    return (int(stem), stem) if stem.isdigit() else (1 << 30, stem)


class MembraneDataset(PairedFilesDataset):
    """One block-wise split of the ISBI 2012 training volume.

    Args:
        root: the folder holding image/ and label/.
        split: train (all blocks but ``fold``), val (block ``fold``) or test (every slice
            under root/test).
        fold: which of the ``num_folds`` contiguous blocks is held out for validation.
        num_folds: how many contiguous blocks the slices are cut into.
        target: which class is 1: ``membrane`` (mask value 0) or ``interior`` (255).
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
        mask_values: stored label value -> class; None takes it from ``target``
            (membrane: ``{0: 1, 255: 0}``, interior: ``{0: 0, 255: 1}``). Any other value in a
            label file is an error naming the file.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        fold: int = 4,
        num_folds: int = 5,
        target: Literal["membrane", "interior"] = "membrane",
        transform: Callable[..., dict[str, Any]] | None = None,
        mask_values: Mapping[int, int] | None = None,
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ConfigError(f"data split {split!r}; membrane has train, val and test")
        if not 0 <= fold < num_folds:
            raise ConfigError(f"data.fold={fold}; expected 0 <= fold < data.num_folds={num_folds}")
        if target not in ("membrane", "interior"):
            raise ConfigError(f"data.target={target!r}; expected membrane or interior")
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"data.root={root} does not exist; expected the ISBI 2012 folder "
                f"with image/ and label/ (from {SOURCE}); set data.root=/path/to/it"
            )
        base = root / "test" if split == "test" else root
        image_dir, mask_dir = base / "image", base / "label"
        pairs = pairs_in_folders(image_dir, mask_dir)
        pairs.sort(key=lambda pair: _slice_key(pair[0].stem))
        if split == "test":
            num_folds, fold = 1, 0
        if len(pairs) < num_folds:
            raise DataError(
                f"{image_dir} has {len(pairs)} slices; data.num_folds={num_folds} "
                "needs at least one slice per block"
            )
        blocks = np.array_split(np.arange(len(pairs)), num_folds)
        chosen = (
            blocks[fold]
            if split in ("val", "test")
            else np.concatenate([b for k, b in enumerate(blocks) if k != fold])
        )
        self.target = target
        super().__init__(
            [pairs[i] for i in chosen],
            num_classes=1,
            ignore_index=None,
            in_channels=1,
            transform=transform,
            where=f"{image_dir} ({split}, fold {fold} of {num_folds})",
            mask_values=mask_values or MEMBRANE_VALUES[target],
        )
