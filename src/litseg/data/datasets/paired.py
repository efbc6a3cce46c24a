"""The shared base of file-backed datasets: a list of (image, mask) paths and how to read them.

Only paths are held, so each loader worker keeps a small list rather than a copy of the data.
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from litseg.data.checks import check_mask_values, check_same_size, require_pairs
from litseg.data.datasets.base import SegmentationDataset
from litseg.data.encoding import MaskEncoding, legacy_encoding, mask_encoding
from litseg.data.files import read_image, read_mask, read_stored_mask


class PairedFilesDataset(SegmentationDataset):
    """Image/mask file pairs, read on demand and checked as they are read.

    Args:
        pairs: (image path, mask path) pairs.
        num_classes: output channels (1 for binary); masks may hold 0..max(num_classes, 2)-1.
        ignore_index: a further allowed mask value that losses and metrics skip.
        in_channels: 1 (gray) or 3 (RGB) image channels.
        colors: class -> [r, g, b] for RGB colour masks: the older spelling of
            ``mask_palette``.
        value_map: raw mask value -> class (e.g. {255: 1}), other values kept as they are: the
            older, partial form of ``mask_values``.
        transform: ``transform(image=..., mask=...) -> dict`` (albumentations-style).
        where: a description of where the pairs came from, for error messages.
        mask_values: stored pixel value -> class (e.g. {0: 0, 255: 1}); unlisted values become
            ``ignore_index``, or are an error without one (see :mod:`litseg.data.encoding`).
        mask_palette: one [r, g, b] per class (or class -> [r, g, b]) for RGB colour masks.
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
        *,
        mask_values: Mapping[int, int] | None = None,
        mask_palette: Sequence[Sequence[int]] | Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        require_pairs(list(pairs), where)
        self.pairs = [(Path(i), Path(m)) for i, m in pairs]
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.in_channels = in_channels
        self.encoding: MaskEncoding | None = mask_encoding(
            num_classes, ignore_index, mask_values, mask_palette or colors
        ) or legacy_encoding(None, value_map)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def image_path(self, index: int) -> Path:
        """The image file of pair ``index`` (evaluation reports name it)."""
        return self.pairs[index][0]

    def read_mask(self, path: Path) -> np.ndarray:
        """The mask at ``path`` as int64 class indices (subclasses may re-encode)."""
        return read_mask(path, encoding=self.encoding)

    def stored_mask(self, index: int) -> np.ndarray:
        """The mask file of pair ``index`` as stored, before any mapping to classes (HxW
        values, or HxWx3 colours for colour masks): what dataset reports count."""
        colour = self.encoding is not None and self.encoding.colour
        return read_stored_mask(self.pairs[index][1], colour=colour)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed (uint8 HxWxC image, uint8/uint16 HxW mask) pair, checked."""
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path, self.in_channels)
        mask = self.read_mask(mask_path)
        check_same_size(image.shape[:2], mask.shape, image_path, mask_path)
        check_mask_values(mask, mask_path, self.num_classes, self.ignore_index)
        # OpenCV (under albumentations) warps uint8/uint16 masks but not int64 ones.
        return image, mask.astype(np.uint8 if mask.max(initial=0) < 256 else np.uint16)
