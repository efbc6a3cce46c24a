"""The shared base of file-backed datasets: a list of (image, mask) paths and how to read them.

Only paths are held, so each loader worker keeps a small list rather than a copy of the data.
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from litseg.data.checks import check_mask_values, check_same_size, require_pairs
from litseg.data.datasets.base import SegmentationDataset
from litseg.data.files import read_image, read_mask


class PairedFilesDataset(SegmentationDataset):
    """Image/mask file pairs, read on demand and checked as they are read.

    Args:
        pairs: (image path, mask path) pairs.
        num_classes: output channels (1 for binary); masks may hold 0..max(num_classes, 2)-1.
        ignore_index: a further allowed mask value that losses and metrics skip.
        in_channels: 1 (gray) or 3 (RGB) image channels.
        colors: class -> [r, g, b] for RGB colour masks (None: index or palette masks).
        value_map: raw mask value -> class (e.g. {255: 1}), applied after reading.
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
        where: a description of where the pairs came from, for error messages.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        num_classes: int,
        ignore_index: int | None = None,
        in_channels: int = 3,
        colors: Mapping[int, Sequence[int]] | None = None,
        value_map: Mapping[int, int] | None = None,
        transform: Callable[..., dict[str, Any]] | None = None,
        where: str = "the dataset",
    ) -> None:
        require_pairs(list(pairs), where)
        self.pairs = [(Path(i), Path(m)) for i, m in pairs]
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.in_channels = in_channels
        self.colors = {int(k): list(v) for k, v in colors.items()} if colors else None
        self.value_map = {int(k): int(v) for k, v in value_map.items()} if value_map else None
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def read_mask(self, path: Path) -> np.ndarray:
        """The mask at ``path`` as int64 class indices (subclasses may re-encode)."""
        return read_mask(path, self.colors, self.value_map)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed (uint8 HxWxC image, uint8/uint16 HxW mask) pair, checked."""
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path, self.in_channels)
        mask = self.read_mask(mask_path)
        check_same_size(image.shape[:2], mask.shape, image_path, mask_path)
        check_mask_values(mask, mask_path, self.num_classes, self.ignore_index)
        # OpenCV (under albumentations) warps uint8/uint16 masks but not int64 ones.
        return image, mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.uint16)
