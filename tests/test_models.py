"""Every model config builds from Hydra and runs forward + backward for every task and size.

Logits must come out at the input's size, including sizes that are not multiples of 32.
Heavy torchvision ResNets run on small inputs and are marked slow.
"""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torchvision import models as tvm

from litseg.errors import ConfigError
from litseg.models.smp_models import SMPModel
from litseg.models.torchvision_models import TorchvisionSegmentation
from tests.helpers import CONF, run_cli

TASKS = {"binary": 1, "multiclass": 4, "multilabel": 4}  # the shapes data: 4 classes
SMALL = [(32, 32), (40, 52)]  # the second is not a multiple of 32
# every conf/model option: a new model YAML is tested here with no test to edit
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def logits_of(out: torch.Tensor | dict) -> torch.Tensor:
    return out["out"] if isinstance(out, dict) else out


def forward_backward(
    net: torch.nn.Module, channels: int, sizes: list[tuple[int, int]], nhwc: bool = False
) -> None:
    """Train-mode forward and backward at each size; logits at the input size, finite grads.

    ``nhwc``: weights and input channels_last, as CPU training runs by default.
    """
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    net.train().to(memory_format=fmt)
    for size in sizes:
        net.zero_grad()
        out = net(torch.randn(2, 3, *size).contiguous(memory_format=fmt))
        logits = logits_of(out)
        assert logits.shape == (2, channels, *size)
        loss = logits.square().mean()
        if isinstance(out, dict) and "aux" in out:
            assert out["aux"].shape == logits.shape
            loss = loss + out["aux"].square().mean()
        loss.backward()
        grads = [p.grad for p in net.parameters() if p.grad is not None]
        # every parameter in use gets a finite gradient (smp's PSPNet leaves layer4 unused)
        assert len(grads) > 0.5 * len(list(net.parameters()))
        assert all(torch.isfinite(g).all() for g in grads)


def build(make_cfg, *overrides: str) -> torch.nn.Module:
    return instantiate(make_cfg(*overrides).model)


@pytest.mark.parametrize("task", ["binary", "multiclass"])  # multilabel: multiclass's net
@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_gives_input_size_logits(make_cfg, model: str, task: str) -> None:
    """Each conf/model option as its YAML sets it: logits and aux at an odd input size."""
    net = build(make_cfg, f"model={model}", f"data.task={task}").eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 33, 47))
    outputs = out.values() if isinstance(out, dict) else [out]
    assert logits_of(out).shape == (1, TASKS[task], 33, 47)
    assert all(o.shape == (1, TASKS[task], 33, 47) for o in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_trains_every_task(make_cfg, model: str, task: str) -> None:
    """Each conf/model option as its YAML sets it: forward and backward for every task."""
    net = build(make_cfg, f"model={model}", f"data.task={task}")
    forward_backward(net, TASKS[task], [(40, 40), (33, 47)])


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize(
    "overrides",
    [
        ("model=unet", "model.base_width=4", "model.depth=3"),
        ("model=unet", "model.base_width=4", "model.norm=group", "model.residual=true"),
        ("model=lraspp",),
        ("model=smp", "model.arch=FPN", "model.encoder=resnet18"),
    ],
    ids=["unet", "unet-group-residual", "lraspp", "smp-fpn"],
)
def test_light_models_every_task(make_cfg, task: str, overrides: tuple[str, ...]) -> None:
    net = build(make_cfg, *overrides, f"data.task={task}")
    forward_backward(net, TASKS[task], SMALL)


@pytest.mark.parametrize(
    "overrides",
    [
        ("model=unet", "model.base_width=4"),
        ("model=lraspp",),
        ("model=smp", "model.arch=Unet", "model.encoder=resnet18"),
    ],
    ids=["unet", "lraspp", "smp-unet"],
)
def test_camvid_size_gives_camvid_size_logits(make_cfg, overrides: tuple[str, ...]) -> None:
    net = build(make_cfg, *overrides).eval()
    with torch.no_grad():
        assert logits_of(net(torch.randn(1, 3, 360, 480))).shape == (1, 4, 360, 480)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch",
    ["Unet", "UnetPlusPlus", "FPN", "PSPNet", "DeepLabV3Plus", "Linknet", "MAnet", "UPerNet",
     "Segformer", "PAN"],
)  # fmt: skip
def test_every_smp_architecture(make_cfg, arch: str) -> None:
    # PAN's pyramid attention pools its 1/16 features three more times: it needs >= 128 px.
    sizes = [(128, 128), (130, 150)] if arch == "PAN" else SMALL
    net = build(make_cfg, "model=smp", f"model.arch={arch}", "data.task=multiclass")
    forward_backward(net, 4, sizes)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ("model=unet", "model.base_width=4"),
        ("model=lraspp",),
        ("model=fcn",),
        ("model=deeplabv3", "model.arch=deeplabv3_mobilenet_v3_large"),
        *[("model=smp", f"model.arch={arch}") for arch in ("Unet", "UnetPlusPlus", "FPN",
          "PSPNet", "DeepLabV3Plus", "Linknet", "MAnet", "UPerNet", "Segformer")],
    ],
)  # fmt: skip
def test_every_model_trains_channels_last(make_cfg, overrides: tuple[str, ...]) -> None:
    """CPU runs train NHWC by default (callbacks.perf.channels_last=auto): no model may break."""
    net = build(make_cfg, *overrides, "data.task=multiclass")
    forward_backward(net, 4, [(40, 52)], nhwc=True)


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize(
    "overrides",
    [("model=deeplabv3", "model.arch=deeplabv3_mobilenet_v3_large")],
    ids=["deeplabv3-mobilenet"],
)  # fcn and deeplabv3 with their YAML's ResNet-50: test_every_model_config_trains_every_task
def test_torchvision_models_every_task(make_cfg, task: str, overrides: tuple[str, ...]) -> None:
    net = build(make_cfg, *overrides, f"data.task={task}")
    forward_backward(net, TASKS[task], [(40, 40), (33, 47)])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["fcn_resnet101", "deeplabv3_resnet101"])
def test_resnet101_variants(arch: str) -> None:
    forward_backward(TorchvisionSegmentation(arch, 3, 2), 2, [(33, 47)])


def test_grayscale_input_channels() -> None:
    for net in (
        TorchvisionSegmentation("lraspp_mobilenet_v3_large", in_channels=1, num_classes=2),
        SMPModel("FPN", "resnet18", in_channels=1, num_classes=2),
    ):
        assert logits_of(net.eval()(torch.randn(1, 1, 40, 50))).shape == (1, 2, 40, 50)


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: TorchvisionSegmentation("fcn_vgg16"), "model.arch='fcn_vgg16'"),
        (lambda: SMPModel("NotANet"), "model.arch='NotANet'"),
        (lambda: SMPModel("FPN", "resnet0"), "model.encoder='resnet0'"),
        (lambda: TorchvisionSegmentation("fcn_resnet50", pretrained="NOPE"), "NOPE"),
        (lambda: SMPModel("FPN", "resnet18", weights_path="/nonexistent.pth"), "weights_path"),
    ],
)
def test_bad_model_options_name_the_key(make, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        make()


def test_no_weights_are_loaded_by_default(make_cfg) -> None:
    """No model option downloads or reads weights unless the user asks for them."""
    with_weights = []
    for name in MODELS:
        model = make_cfg(f"model={name}").model
        assert model.get("pretrained", False) is False, f"conf/model/{name}.yaml: pretrained"
        assert model.get("weights_path") is None, f"conf/model/{name}.yaml: weights_path"
        with_weights += [name] if "pretrained" in model else []
    assert {"fcn", "deeplabv3", "lraspp", "smp"} <= set(with_weights)


def test_pretrained_offline_stops_with_how_to_supply_weights(tmp_path: Path, monkeypatch) -> None:
    """An unreachable download source gives a ConfigError naming the URL and weights_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # a closed port: offline, immediately
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(ConfigError) as err:
        TorchvisionSegmentation("lraspp_mobilenet_v3_large", 3, 2, pretrained=True)
    message = str(err.value)
    assert "model.weights_path=" in message
    assert tvm.MobileNet_V3_Large_Weights.DEFAULT.url in message


def test_weights_path_loads_the_backbone(tmp_path: Path) -> None:
    source = tvm.mobilenet_v3_large()
    path = tmp_path / "mobilenet.pth"
    torch.save(source.state_dict(), path)
    net = TorchvisionSegmentation("lraspp_mobilenet_v3_large", 3, 2, weights_path=str(path))
    loaded = net.net.backbone.state_dict()
    for key, value in source.features.state_dict().items():
        torch.testing.assert_close(loaded[key], value)


def test_smp_weights_path_loads_the_encoder_even_for_grayscale(tmp_path: Path) -> None:
    source = SMPModel("FPN", "resnet18", 3, 2)
    path = tmp_path / "encoder.pth"
    torch.save(source.net.encoder.state_dict(), path)
    net = SMPModel("FPN", "resnet18", in_channels=1, num_classes=2, weights_path=str(path))
    torch.testing.assert_close(
        net.net.encoder.layer1[0].conv1.weight, source.net.encoder.layer1[0].conv1.weight
    )
    # smp folds the RGB stem into one channel by summing its filters
    torch.testing.assert_close(
        net.net.encoder.conv1.weight[:, 0], source.net.encoder.conv1.weight.sum(1)
    )


@pytest.mark.slow
def test_cli_pretrained_offline_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub unreachable, as on an offline machine
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # and nothing cached
    result = run_cli(
        "train.py",
        "model=smp",
        "model.pretrained=true",
        "data.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
        "logger=none",
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "model.weights_path=" in result.stderr
    assert "Traceback" not in result.stderr


def test_smp_timm_encoder_weights_path_takes_a_timm_checkpoint(tmp_path: Path) -> None:
    import timm

    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "timm_resnet18.pth"
    torch.save(source.state_dict(), path)
    net = SMPModel("FPN", "tu-resnet18", 3, 2, weights_path=str(path))
    torch.testing.assert_close(
        net.net.encoder.model.layer1[0].conv1.weight, source.layer1[0].conv1.weight
    )
