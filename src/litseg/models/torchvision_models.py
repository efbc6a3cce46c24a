"""torchvision's segmentation models (FCN, DeepLabV3, LR-ASPP) behind litseg's interface."""

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import segmentation as tvseg

from litseg.errors import ConfigError

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "fcn_resnet50": tvseg.fcn_resnet50,
    "fcn_resnet101": tvseg.fcn_resnet101,
    "deeplabv3_resnet50": tvseg.deeplabv3_resnet50,
    "deeplabv3_resnet101": tvseg.deeplabv3_resnet101,
    "deeplabv3_mobilenet_v3_large": tvseg.deeplabv3_mobilenet_v3_large,
    "lraspp_mobilenet_v3_large": tvseg.lraspp_mobilenet_v3_large,
}


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the backbone's first convolution for one taking ``in_channels`` channels."""
    for name, module in model.backbone.named_modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            new = nn.Conv2d(
                in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                bias=module.bias is not None,
            )
            parent = model.backbone
            *path, last = name.split(".")
            for part in path:
                parent = getattr(parent, part)
            setattr(parent, last, new)
            return
    raise ConfigError("model.in_channels: found no 3-channel input convolution to replace")


class TorchvisionSegmentation(nn.Module):
    """A torchvision segmentation model returning ``{"out": logits, "aux": logits?}``.

    Weights are off by default (no download); ``weights_backbone`` names torchvision's
    ImageNet backbone weights when a user wants them and the network is reachable.
    """

    def __init__(
        self,
        arch: str = "fcn_resnet50",
        in_channels: int = 3,
        num_classes: int = 2,
        aux_loss: bool = True,
        weights_backbone: str | None = None,
    ) -> None:
        super().__init__()
        if arch not in BUILDERS:
            raise ConfigError(f"model.arch={arch!r}; expected one of {', '.join(BUILDERS)}")
        kwargs = {"weights": None, "weights_backbone": weights_backbone, "num_classes": num_classes}
        if not arch.startswith("lraspp"):
            kwargs["aux_loss"] = aux_loss
        self.net = BUILDERS[arch](**kwargs)
        if in_channels != 3:
            _replace_first_conv(self.net, in_channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(self.net(x))
