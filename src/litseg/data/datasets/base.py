"""What every litseg dataset shares: an untransformed pair from ``raw``, then the transform."""

from collections.abc import Callable
from typing import Any

import numpy as np
from torch.utils.data import Dataset


class SegmentationDataset(Dataset):
    """Subclasses give ``raw(index) -> (image, mask)``; items are ``{"image", "mask"}`` dicts.

    ``raw`` stays separate so that dataset checks and statistics read the untransformed data.
    """

    transform: Callable[..., dict[str, Any]] | None = None

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The untransformed (image HxWxC uint8, mask HxW) pair at ``index``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, mask = self.raw(index)
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        return {"image": image, "mask": mask}
