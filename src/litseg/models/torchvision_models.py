"""torchvision's segmentation models (FCN, DeepLabV3, LR-ASPP) behind litseg's interface."""

from collections.abc import Callable

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import segmentation as tvseg

from litseg.errors import ConfigError
from litseg.models.weights import StateDict, download_or_explain, load_into, read_state_dict

__all__ = ["BACKBONE_WEIGHTS", "BUILDERS", "TorchvisionSegmentation", "backbone_weights"]

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "fcn_resnet50": tvseg.fcn_resnet50,
    "fcn_resnet101": tvseg.fcn_resnet101,
    "deeplabv3_resnet50": tvseg.deeplabv3_resnet50,
    "deeplabv3_resnet101": tvseg.deeplabv3_resnet101,
    "deeplabv3_mobilenet_v3_large": tvseg.deeplabv3_mobilenet_v3_large,
    "lraspp_mobilenet_v3_large": tvseg.lraspp_mobilenet_v3_large,
}

# The ImageNet classification weights each backbone starts from.
BACKBONE_WEIGHTS: dict[str, type[tvm.WeightsEnum]] = {
    "resnet50": tvm.ResNet50_Weights,
    "resnet101": tvm.ResNet101_Weights,
    "mobilenet_v3_large": tvm.MobileNet_V3_Large_Weights,
}


def _backbone_name(arch: str) -> str:
    return arch.split("_", 1)[1]


def _backbone_state(arch: str, state: StateDict) -> StateDict:
    """Map a classification network's state dict onto the segmentation backbone's keys."""
    if "mobilenet" in arch:
        prefix = "features."
        return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the backbone's first convolution for one taking ``in_channels`` channels.

    Pretrained RGB filters are averaged over their input channels and repeated, so a
    grayscale or multispectral input still starts from the pretrained features.
    """
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
            with torch.no_grad():
                mean = module.weight.mean(dim=1, keepdim=True)
                new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * 3 / in_channels)
                if module.bias is not None:
                    new.bias.copy_(module.bias)
            parent = model.backbone
            *path, last = name.split(".")
            for part in path:
                parent = getattr(parent, part)
            setattr(parent, last, new)
            return
    raise ConfigError("model.in_channels: found no 3-channel input convolution to replace")


def backbone_weights(arch: str, pretrained: bool | str) -> tvm.WeightsEnum:
    """torchvision's weights enum member for ``arch``'s backbone (True means DEFAULT)."""
    enum = BACKBONE_WEIGHTS[_backbone_name(arch)]
    name = "DEFAULT" if pretrained is True else str(pretrained)
    try:
        return enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        choices = ", ".join(w.name for w in enum)
        raise ConfigError(
            f"model.pretrained={pretrained!r} is not a weight of {enum.__name__}; "
            f"expected true, false or one of {choices}"
        ) from None


class TorchvisionSegmentation(nn.Module):
    """A torchvision segmentation model returning ``{"out": logits, "aux": logits?}``.

    Args:
        arch: one of BUILDERS (e.g. ``deeplabv3_resnet50``, ``lraspp_mobilenet_v3_large``).
        in_channels, num_classes: input channels and output channels.
        aux_loss: build the auxiliary head (FCN, DeepLabV3); SegmentationModule weighs its
            loss with ``module.aux_weight``.
        pretrained: false (default, no download); true or a torchvision weights name (e.g.
            ``IMAGENET1K_V1``) for ImageNet backbone weights, read from ``weights_path`` when
            given, else downloaded (cached by torch.hub) when the network is reachable.
        weights_path: a local copy of the backbone's classification weights file.
        weights_backbone: older spelling of ``pretrained`` (a weights name), kept working.
    """

    def __init__(
        self,
        arch: str = "fcn_resnet50",
        in_channels: int = 3,
        num_classes: int = 2,
        aux_loss: bool = True,
        pretrained: bool | str = False,
        weights_path: str | None = None,
        weights_backbone: str | None = None,
    ) -> None:
        super().__init__()
        if arch not in BUILDERS:
            raise ConfigError(f"model.arch={arch!r}; expected one of {', '.join(BUILDERS)}")
        pretrained = pretrained or weights_backbone or bool(weights_path)
        kwargs = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
        if not arch.startswith("lraspp"):
            kwargs["aux_loss"] = aux_loss
        self.net = BUILDERS[arch](**kwargs)
        if pretrained:
            self._load_backbone(arch, pretrained, weights_path)
        if in_channels != 3:
            _replace_first_conv(self.net, in_channels)

    def _load_backbone(self, arch: str, pretrained: bool | str, weights_path: str | None) -> None:
        if weights_path:
            state = read_state_dict(weights_path)
        else:
            weights = backbone_weights(arch, pretrained)
            state = download_or_explain(
                lambda: weights.get_state_dict(progress=False),
                weights.url,
                f"the {_backbone_name(arch)} backbone weights ({weights})",
            )
        load_into(self.net.backbone, _backbone_state(arch, state), f"{arch} backbone")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(self.net(x))
