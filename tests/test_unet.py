"""litseg's U-Net: logits at the input's size for any size and every option."""

import pytest
import torch

from litseg.errors import ConfigError
from litseg.models.unet import UNet


@pytest.mark.parametrize("size", [(64, 64), (360, 480), (37, 53)])
@pytest.mark.parametrize("bilinear", [True, False])
def test_logits_match_input_size(size: tuple[int, int], bilinear: bool) -> None:
    net = UNet(in_channels=3, num_classes=5, depth=4, base_width=4, bilinear=bilinear).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, *size))
    assert out.shape == (1, 5, *size)


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_options_train(norm: str) -> None:
    net = UNet(1, 2, depth=2, base_width=4, norm=norm, dropout=0.1, residual=True)
    x = torch.randn(2, 1, 32, 40)
    out = net(x)
    out.mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_depth_and_width_change_capacity() -> None:
    def n(net: torch.nn.Module) -> int:
        return sum(p.numel() for p in net.parameters())

    assert n(UNet(3, 2, depth=3, base_width=8)) < n(UNet(3, 2, depth=4, base_width=8))
    assert n(UNet(3, 2, depth=3, base_width=8)) < n(UNet(3, 2, depth=3, base_width=16))


@pytest.mark.parametrize(
    ("kwargs", "key"), [({"depth": 0}, "model.depth"), ({"norm": "layer"}, "model.norm")]
)
def test_bad_options_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        UNet(3, 2, **kwargs)
