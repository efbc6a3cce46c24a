"""Whole-image (reflect-padded) and sliding-window inference, and flip TTA, on real networks."""

import numpy as np
import pytest
import torch
from monai.inferers import sliding_window_inference
from PIL import Image
from torch import nn

from litseg.errors import ConfigError
from litseg.inference import (
    flip_tta,
    infer,
    model_stride,
    pad_to_multiple,
    slide,
    whole,
    window_starts,
)
from litseg.models.unet import UNet
from tests.helpers import SHARED_DATA

CAMVID_IMAGE = SHARED_DATA / "camvid" / "val" / "0016E5_07959.png"


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


def test_whole_pads_to_the_stride_by_reflection_and_crops_back(unet: UNet) -> None:
    assert model_stride(unet) == 8
    x = torch.randn(1, 3, 45, 61)  # the U-Net alone cannot take 45 x 61 at depth 3
    with torch.no_grad():
        out = whole(unet, x, stride=8)
        padded = unet(nn.functional.pad(x, (0, 3, 0, 3), mode="reflect"))
    assert out.shape == (1, 4, 45, 61)
    torch.testing.assert_close(out, padded[..., :45, :61])


@pytest.mark.parametrize(("h", "w"), [(45, 61), (8, 16), (5, 3), (1, 1), (2, 9)])
def test_pad_to_multiple_reflects_and_covers_images_smaller_than_the_pad(h: int, w: int) -> None:
    x = torch.randn(2, 3, h, w)
    padded = pad_to_multiple(x, 8)
    ph, pw = (-h) % 8, (-w) % 8
    assert padded.shape == (2, 3, h + ph, w + pw)
    torch.testing.assert_close(padded[..., :h, :w], x, rtol=0, atol=0)
    if ph < h and pw < w:  # torch's reflect, where it is defined
        reflect = nn.functional.pad(x, (0, pw, 0, ph), mode="reflect")
        torch.testing.assert_close(padded, reflect, rtol=0, atol=0)
    else:  # every padded pixel is one of the image's own
        values = set(x.flatten().tolist())
        assert set(padded.flatten().tolist()) <= values


def test_whole_sees_at_the_padded_edge_what_a_larger_image_shows_there(unet: UNet) -> None:
    """A scene that continues past the bottom and right edges as the mirror image of what is
    inside them (water, a symmetric facade): whole-image inference on the cut image (57 x 61,
    not a multiple of the stride 8) gives the logits of the uncut image, edge rows included."""
    torch.manual_seed(1)
    cut = torch.randn(1, 3, 57, 61)
    scene = nn.functional.pad(cut, (0, 3, 0, 7), mode="reflect")  # 64 x 64, the real content
    with torch.no_grad():
        ours = whole(unet, cut, stride=8)
        uncut = unet(scene)[..., :57, :61]
        zeros = unet(nn.functional.pad(cut, (0, 3, 0, 7)))[..., :57, :61]
    torch.testing.assert_close(ours, uncut, rtol=0, atol=1e-5)
    # a flat band of zeros would have shown the network something else near the edge
    assert (zeros - uncut)[..., -4:, :].abs().max() > 1e-3


def test_whole_near_the_cut_edge_of_a_real_frame_is_close_to_the_uncut_frame(unet: UNet) -> None:
    """A CamVid frame (360 x 480) cut to 355 x 473: in the last 8 rows, the logits of
    whole-image inference stay much closer to those of the uncut frame than zero padding's."""
    frame = np.asarray(Image.open(CAMVID_IMAGE).convert("RGB"), dtype=np.float32) / 255
    full = torch.from_numpy((frame - 0.5) / 0.25).permute(2, 0, 1)[None]
    h, w = 355, 473
    cut = full[..., :h, :w]
    with torch.no_grad():
        uncut = unet(full)[..., :h, :w]
        ours = whole(unet, cut, stride=8)
        zeros = unet(nn.functional.pad(cut, (0, (-w) % 8, 0, (-h) % 8)))[..., :h, :w]
    ours_err = (ours - uncut)[..., -8:, :].abs().mean()
    zeros_err = (zeros - uncut)[..., -8:, :].abs().mean()
    assert ours_err < zeros_err / 4, (float(ours_err), float(zeros_err))


def test_flip_tta_of_a_flip_equivariant_model_equals_the_plain_output() -> None:
    torch.manual_seed(0)
    model = SymmetricConv().eval()
    x = torch.randn(2, 3, 33, 29)
    with torch.no_grad():
        plain = model(x)
        for tta in ("flip", "hflip", "vflip"):
            torch.testing.assert_close(flip_tta(model, x, tta), plain, rtol=0, atol=1e-5)


class D4SymmetricConv(SymmetricConv):
    """A conv whose kernels are also symmetric under transposition: D4-equivariant."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight
        w = (w + w.flip(-1) + w.flip(-2) + w.flip(-1, -2)) / 4
        w = (w + w.transpose(-2, -1)) / 2
        return nn.functional.conv2d(x, w, self.conv.bias, padding=2)


def test_d4_tta_of_a_d4_equivariant_model_equals_the_plain_output() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 33, 29)
    with torch.no_grad():
        model = D4SymmetricConv().eval()
        torch.testing.assert_close(flip_tta(model, x, "d4"), model(x), rtol=0, atol=1e-5)
        flip_only = SymmetricConv().eval()
        assert (flip_tta(flip_only, x, "d4") - flip_only(x)).abs().max() > 1e-3


def test_d4_tta_averages_the_eight_views_of_a_non_square_image(unet: UNet) -> None:
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        tta = infer(unet, x, stride=8, tta="d4")
        views = []
        for t in (False, True):
            for dims in ((), (-1,), (-2,), (-2, -1)):
                v = x.flip(dims) if dims else x
                out = unet(v.transpose(-2, -1) if t else v)
                out = out.transpose(-2, -1) if t else out
                views.append(out.flip(dims) if dims else out)
    assert tta.shape == (1, unet(x).shape[1], 32, 48)
    torch.testing.assert_close(tta, torch.stack(views).mean(0))


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
