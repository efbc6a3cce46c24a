"""litseg's own U-Net (Ronneberger et al., 2015) with the options that matter in practice."""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from litseg.errors import ConfigError

__all__ = ["ConvBlock", "Norm", "UNet", "Up", "make_norm"]

Norm = Literal["batch", "instance", "group", "none"]


def make_norm(norm: Norm, channels: int) -> nn.Module:
    """A normalisation layer by name; 'group' uses up to 8 groups that divide ``channels``."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if norm == "none":
        return nn.Identity()
    raise ConfigError(f"model.norm={norm!r}; expected batch, instance, group or none")


class ConvBlock(nn.Module):
    """Two 3x3 conv-norm-ReLU layers, optionally with a residual connection and dropout."""

    def __init__(
        self, in_ch: int, out_ch: int, norm: Norm, dropout: float = 0.0, residual: bool = False
    ) -> None:
        super().__init__()
        bias = norm == "none"
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias),
            make_norm(norm, out_ch),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias),
            make_norm(norm, out_ch),
        )
        self.skip = (
            (nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1, bias=False))
            if residual
            else None
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.skip is not None:
            y = y + self.skip(x)
        return self.act(y)


class Up(nn.Module):
    """Upsample by 2, concatenate the skip connection, then a ConvBlock."""

    def __init__(
        self, in_ch: int, skip_ch: int, out_ch: int, bilinear: bool, norm: Norm, **block: object
    ) -> None:
        super().__init__()
        if bilinear:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(in_ch, in_ch // 2, 1, bias=False),
            )
        else:
            self.up = nn.ConvTranspose2d(in_ch, in_ch // 2, 2, stride=2)
        self.block = ConvBlock(in_ch // 2 + skip_ch, out_ch, norm, **block)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        # Odd sizes: the encoder floored, so pad the upsampled map back to the skip's size.
        dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        if dh or dw:
            x = F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])
        return self.block(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net returning logits at the input's size, for any input size.

    Args:
        in_channels: image channels (3 for RGB, 1 for grayscale).
        num_classes: output channels (1 for binary, C for multiclass/multilabel).
        depth: number of down-sampling steps.
        base_width: channels of the first level; each level doubles them.
        norm: batch, instance, group or none.
        bilinear: bilinear up-sampling (+1x1 conv) instead of transposed convolutions.
        dropout: Dropout2d probability inside each block.
        residual: residual connections inside each block.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        depth: int = 4,
        base_width: int = 32,
        norm: Norm = "batch",
        bilinear: bool = True,
        dropout: float = 0.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ConfigError(f"model.depth={depth}; expected an integer >= 1")
        if base_width < 2:
            raise ConfigError(f"model.base_width={base_width}; expected an integer >= 2")
        block = {"dropout": dropout, "residual": residual}
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.stem = ConvBlock(in_channels, widths[0], norm, **block)
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), ConvBlock(widths[i], widths[i + 1], norm, **block))
            for i in range(depth)
        )
        self.up = nn.ModuleList(
            Up(widths[i + 1], widths[i], widths[i], bilinear, norm, **block)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.up:
            y = up(y, skips.pop())
        return self.head(y)
