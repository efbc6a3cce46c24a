"""Segmentation models: every one maps (N, C_in, H, W) images to (N, num_classes, H, W) logits.

One module per model family: ``unet.py`` (litseg's U-Net), ``smp_models.py`` (any
segmentation_models_pytorch architecture), ``torchvision_models.py`` (FCN, DeepLabV3,
LR-ASPP); ``weights.py`` reads or downloads pretrained weights for them. A config names a model
by its module, e.g. ``_target_: litseg.models.unet.UNet`` in ``conf/model/unet.yaml``.

The names below are imported on first use: smp and torchvision take seconds to import, and a
run that builds a U-Net should not pay for them.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litseg.models.smp_models import SMPModel
    from litseg.models.torchvision_models import TorchvisionSegmentation
    from litseg.models.unet import UNet

# each exported name and the module that defines it
_HOMES = {
    "SMPModel": "litseg.models.smp_models",
    "TorchvisionSegmentation": "litseg.models.torchvision_models",
    "UNet": "litseg.models.unet",
}

__all__ = ["SMPModel", "TorchvisionSegmentation", "UNet"]


def __getattr__(name: str) -> Any:
    """``litseg.models.UNet`` and the other exports, imported from their module on first use."""
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'litseg.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names with the lazily imported exports, for tab completion and dir()."""
    return sorted({*globals(), *__all__})
