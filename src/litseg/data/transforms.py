"""Albumentations pipelines as the datasets use them: image and mask always move together."""

from typing import Any

import albumentations as A
import numpy as np
import torch


class ToSample:
    """Final step of every pipeline: HWC float image -> CHW float tensor, mask -> int64 tensor.

    A plain callable rather than ``ToTensorV2`` so that masks come out as int64 class indices
    (what losses and metrics take) and grayscale images keep a channel axis.
    """

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
        if image.ndim == 2:
            image = image[..., None]
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        mask_t = torch.from_numpy(np.ascontiguousarray(mask)).long()
        return {"image": image_t, "mask": mask_t}


class Pipeline:
    """An albumentations ``Compose`` followed by :class:`ToSample`.

    Args:
        transforms: albumentations transforms, applied in order to image and mask.
    """

    def __init__(self, transforms: list[A.BasicTransform] | None = None) -> None:
        self.compose = A.Compose(list(transforms or []))
        self.to_sample = ToSample()

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
        out = self.compose(image=image, mask=mask)
        return self.to_sample(out["image"], out["mask"])

    def __repr__(self) -> str:
        return f"Pipeline({self.compose.transforms!r})"
