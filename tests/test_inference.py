"""Whole-image and sliding-window inference, and flip TTA, on real networks."""

import pytest
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from litseg.errors import ConfigError
from litseg.inference import flip_tta, infer, model_stride, slide, whole, window_starts
from litseg.models.unet import UNet


@pytest.fixture
def unet() -> UNet:
    torch.manual_seed(0)
    return UNet(3, 4, depth=3, base_width=8).eval()


class SymmetricConv(nn.Module):
    """A conv whose kernels are symmetric under both flips: a flip-equivariant model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        w = (w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)) / 4
        return nn.functional.conv2d(x, w, self.conv.bias, padding=2)


def test_one_window_covering_the_image_equals_the_whole_image(unet: UNet) -> None:
    x = torch.randn(2, 3, 48, 40)
    with torch.no_grad():
        sliding = slide(unet, x, window=(48, 40), overlap=0.5)
        plain = whole(unet, x, stride=8)
    torch.testing.assert_close(sliding, plain, rtol=0, atol=1e-5)


def test_sliding_window_matches_monai(unet: UNet) -> None:
    x = torch.randn(2, 3, 90, 70)
    with torch.no_grad():
        ours = slide(unet, x, window=32, overlap=0.25, batch_size=5)
        monai = sliding_window_inference(x, (32, 32), 4, unet, overlap=0.25, mode="gaussian")
    assert ours.shape == (2, 4, 90, 70)
    torch.testing.assert_close(ours, monai, rtol=0, atol=1e-5)
    # overlapping windows really blend: the result is not one window's logits
    with torch.no_grad():
        corner = unet(x[:, :, :32, :32])
    assert (ours[:, :, :32, :32] - corner).abs().max() > 1e-4


def test_image_smaller_than_the_window_keeps_its_size(unet: UNet) -> None:
    x = torch.randn(1, 3, 20, 27)
    with torch.no_grad():
        ours = slide(unet, x, window=32)
        monai = sliding_window_inference(x, (32, 32), 1, unet, mode="gaussian")
    assert ours.shape == (1, 4, 20, 27)
    torch.testing.assert_close(ours, monai, rtol=0, atol=1e-5)


def test_cpu_inference_feeds_the_model_channels_last(unet: UNet) -> None:
    layouts = []
    unet.register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        out = whole(unet, x, stride=8)
        slide(unet, x, window=32)
        layouts.append("nchw")
        plain = unet(x)
    assert layouts == [True, True, "nchw", False]  # whole, slide (one batch of 4), plain
    # same numbers as the plain NCHW pass, and the weights are left as they were
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-5)
    assert unet.stem.body[0].weight.is_contiguous()  # a 3x3 conv


@pytest.mark.parametrize("size", [64, 50, 37])
def test_window_starts_cover_the_axis(size: int) -> None:
    starts = window_starts(size, 16, 0.25)
    assert starts[0] == 0 and starts[-1] + 16 == size
    assert all(b - a <= 16 for a, b in zip(starts, starts[1:], strict=False))


def test_whole_pads_to_the_stride_and_crops_back(unet: UNet) -> None:
    assert model_stride(unet) == 8
    x = torch.randn(1, 3, 45, 61)  # the U-Net alone cannot take 45 x 61 at depth 3
    with torch.no_grad():
        out = whole(unet, x, stride=8)
        padded = unet(nn.functional.pad(x, (0, 3, 0, 3)))
    assert out.shape == (1, 4, 45, 61)
    torch.testing.assert_close(out, padded[..., :45, :61])


def test_flip_tta_of_a_flip_equivariant_model_equals_the_plain_output() -> None:
    torch.manual_seed(0)
    model = SymmetricConv().eval()
    x = torch.randn(2, 3, 33, 29)
    with torch.no_grad():
        plain = model(x)
        for tta in ("flip", "hflip", "vflip"):
            torch.testing.assert_close(flip_tta(model, x, tta), plain, rtol=0, atol=1e-5)


def test_flip_tta_changes_a_model_that_is_not_equivariant(unet: UNet) -> None:
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        plain = infer(unet, x, stride=8)
        tta = infer(unet, x, stride=8, tta="flip")
        by_hand = (unet(x) + unet(x.flip(-1)).flip(-1) + unet(x.flip(-2)).flip(-2)) / 3
    assert (plain - tta).abs().max() > 1e-4
    torch.testing.assert_close(tta, by_hand)


def test_bad_options_name_the_key(unet: UNet) -> None:
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ConfigError, match="inference.mode='tiles'"):
        infer(unet, x, mode="tiles")
    with pytest.raises(ConfigError, match="inference.window"):
        infer(unet, x, mode="slide")
    with pytest.raises(ConfigError, match="inference.tta='rot'"):
        infer(unet, x, tta="rot")
