"""Any segmentation_models_pytorch architecture with any of its encoders, as logits."""

import math

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from litseg.errors import ConfigError
from litseg.models.weights import download_or_explain, load_into, read_state_dict

__all__ = ["ARCHS", "SMPModel"]

ARCHS: dict[str, str] = {name.lower(): name for name in smp.__dict__ if name in {
    "Unet", "UnetPlusPlus", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus", "Linknet",
    "MAnet", "PAN", "UPerNet", "Segformer", "DPT",
}}  # fmt: skip


def _weights_source(encoder: str, weights: str | bool) -> str:
    """Where smp downloads an encoder's weights from, for the error message."""
    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {})
    repo = settings.get(weights, {}).get("repo_id") if isinstance(weights, str) else None
    if repo:
        return f"https://huggingface.co/{repo} (model.safetensors)"
    return "the Hugging Face Hub (timm)" if encoder.startswith("tu-") else "the Hugging Face Hub"


class SMPModel(nn.Module):
    """``smp.create_model(arch, encoder)`` returning logits at the input's size, any size.

    smp's decoders need sides divisible by the encoder's output stride (32 for most); the
    input is padded up to the next multiple (reflection) and the logits are cropped back.

    Args:
        arch: Unet, UnetPlusPlus, FPN, PSPNet, DeepLabV3, DeepLabV3Plus, Linknet, MAnet, PAN,
            UPerNet, Segformer (case-insensitive).
        encoder: any smp encoder name (``resnet18``, ``efficientnet-b0``, ``mit_b0``,
            ``tu-<timm name>``).
        in_channels, num_classes: input channels and output channels.
        pretrained: false (default, no download); true for smp's ``imagenet`` weights or an
            smp weights name; read from ``weights_path`` when given, else downloaded when the
            network is reachable.
        weights_path: a local copy of the encoder's weights (.safetensors or .pth).
        pad_multiple: side multiple the model needs (None: smp's 2**encoder_depth).
        kwargs: passed on to the architecture (e.g. ``decoder_channels``, ``encoder_depth``).
    """

    def __init__(
        self,
        arch: str = "Unet",
        encoder: str = "resnet18",
        in_channels: int = 3,
        num_classes: int = 2,
        pretrained: bool | str = False,
        weights_path: str | None = None,
        pad_multiple: int | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__()
        if arch.lower() not in ARCHS:
            raise ConfigError(f"model.arch={arch!r}; expected one of {', '.join(ARCHS.values())}")
        arch = ARCHS[arch.lower()]
        if not encoder.startswith("tu-") and encoder not in smp.encoders.get_encoder_names():
            raise ConfigError(
                f"model.encoder={encoder!r} is not an smp encoder; see "
                "smp.encoders.get_encoder_names() or use tu-<timm model>"
            )
        build = dict(arch=arch, encoder_name=encoder, classes=num_classes, **kwargs)
        weights = None
        if pretrained and not weights_path:
            weights = "imagenet" if pretrained is True else str(pretrained)
            if encoder.startswith("tu-"):
                weights = True
        try:
            if weights is None:
                self.net = smp.create_model(**build, in_channels=in_channels, encoder_weights=None)
            else:
                self.net = download_or_explain(
                    lambda: smp.create_model(
                        **build, in_channels=in_channels, encoder_weights=weights
                    ),
                    _weights_source(encoder, weights),
                    f"the {encoder} encoder weights ({weights})",
                )
        except KeyError as err:  # smp names wrong weights or encoders with a KeyError
            raise ConfigError(
                f"model.encoder={encoder} / model.pretrained={pretrained}: {err}"
            ) from err
        except (TypeError, AssertionError) as err:
            raise ConfigError(f"model.arch={arch} with model.encoder={encoder}: {err}") from err
        if weights_path:
            self._load_encoder(weights_path, in_channels, build)
        depth = int(kwargs.get("encoder_depth", 5))
        self.pad_multiple = pad_multiple or 2**depth

    def _load_encoder(self, weights_path: str, in_channels: int, build: dict) -> None:
        """Load the encoder's 3-channel weights, then adapt its stem to ``in_channels``."""
        if in_channels != 3:
            self.net = smp.create_model(**build, in_channels=3, encoder_weights=None)
        state = read_state_dict(weights_path)
        if build["encoder_name"].startswith("tu-"):  # a timm checkpoint: smp wraps it as .model
            state = {k if k.startswith("model.") else f"model.{k}": v for k, v in state.items()}
        load_into(self.net.encoder, state, f"{build['encoder_name']} encoder")
        if in_channels != 3:
            self.net.encoder.set_in_channels(in_channels, pretrained=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.pad_multiple
        ph, pw = math.ceil(h / m) * m - h, math.ceil(w / m) * m - w
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode=mode)
        out = self.net(x)
        if ph or pw:
            out = out[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
        return out
