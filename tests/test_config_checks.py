"""Config values are checked where they enter: one ConfigError line naming the key and range."""

from functools import partial

import pytest
import torch
from torch import nn

from litseg.builders import build_datamodule
from litseg.config_checks import check_run_config
from litseg.data.datamodule import SegmentationDataModule
from litseg.data.datasets.shapes import ShapesDataset
from litseg.errors import ConfigError
from litseg.inference import infer, slide, whole
from litseg.models.unet import UNet
from litseg.runtime.entry import run_reporting_errors
from tests.helpers import CONF

PREDICT = ["ckpt_path=model.ckpt", "input=images", "output=masks"]
EVAL = ["ckpt_path=model.ckpt"]

# (entry config, overrides, the start of the expected message)
BAD = [
    ("train", ["data.batch_size=-4"], "data.batch_size=-4: expected an integer >= 1"),
    ("train", ["data.batch_size=0"], "data.batch_size=0: expected an integer >= 1"),
    ("train", ["data.batch_size=2.5"], "data.batch_size=2.5: expected an integer >= 1"),
    ("train", ["data.batch_size=true"], "data.batch_size=true: expected an integer >= 1"),
    ("train", ["data.batch_size=eight"], "data.batch_size='eight': expected an integer >= 1"),
    ("train", ["data.eval_batch_size=0"], "data.eval_batch_size=0: expected null or an integer"),
    ("train", ["data.num_workers=-1"], "data.num_workers=-1: expected null or an integer >= 0"),
    ("train", ["augment=basic", "data.crop_size=0"], "data.crop_size=0: expected null or an"),
    ("train", ["data.splits.val.length=0"], "data.splits.val.length=0: expected null or an"),
    ("train", ["data.splits.train.length=-5"], "data.splits.train.length=-5: expected null"),
    ("train", ["trainer.max_epochs=0"], "trainer.max_epochs=0: expected null, -1 or an integer"),
    ("train", ["trainer.max_steps=0"], "trainer.max_steps=0: expected -1 or an integer >= 1"),
    (
        "train",
        ["trainer.limit_train_batches=0"],
        "trainer.limit_train_batches=0: would train on no batches; expected null, an integer",
    ),
    ("train", ["trainer.limit_train_batches=0.0"], "trainer.limit_train_batches=0.0: would"),
    ("train", ["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5: expected"),
    ("train", ["trainer.limit_train_batches=-2"], "trainer.limit_train_batches=-2: expected"),
    (
        "train",
        ["trainer.limit_val_batches=0"],
        "trainer.limit_val_batches=0: turns validation off, but callbacks.early_stopping "
        "monitors val/mIoU; add callbacks.early_stopping=null",
    ),
    (
        "train",
        ["trainer.limit_val_batches=-1", "callbacks.early_stopping=null"],
        "trainer.limit_val_batches=-1: expected null, 0 (off), an integer >= 1 or a fraction",
    ),
    ("train", ["trainer.limit_test_batches=0"], "trainer.limit_test_batches=0: would test no"),
    ("train", ["trainer.overfit_batches=-1"], "trainer.overfit_batches=-1: expected null, 0 (off)"),
    ("train", ["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0: expect"),
    ("train", ["trainer.devices=0"], "trainer.devices=0: expected auto, -1 (all), an integer"),
    ("train", ["trainer.devices=[]"], "trainer.devices=[]: expected auto"),
    ("train", ["trainer.devices=-3"], "trainer.devices=-3: expected auto"),
    ("train", ["trainer.num_nodes=0"], "trainer.num_nodes=0: expected an integer >= 1"),
    ("train", ["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0: expect"),
    ("train", ["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0: expected an integer"),
    ("train", ["trainer.gradient_clip_val=-1.0"], "trainer.gradient_clip_val=-1.0: expected null"),
    ("train", ["trainer.gradient_clip_algorithm=l2"], "trainer.gradient_clip_algorithm='l2': exp"),
    ("train", ["optimizer.lr=0"], "optimizer.lr=0: expected a finite number > 0"),
    ("train", ["optimizer.lr=-0.001"], "optimizer.lr=-0.001: expected a finite number > 0"),
    ("train", ["optimizer.lr=nan"], "optimizer.lr=nan: expected a finite number > 0"),
    ("train", ["optimizer.lr=inf"], "optimizer.lr=inf: expected a finite number > 0"),
    ("train", ["optimizer.weight_decay=-0.1"], "optimizer.weight_decay=-0.1: expected a finite"),
    ("eval", [*EVAL, "data.batch_size=-4"], "data.batch_size=-4: expected an integer >= 1"),
    ("eval", [*EVAL, "trainer.limit_test_batches=0"], "trainer.limit_test_batches=0: would eval"),
    (
        "eval",
        [*EVAL, "split=val", "trainer.limit_val_batches=0"],
        "trainer.limit_val_batches=0: would evaluate no batches (split=val)",
    ),
    ("eval", [*EVAL, "report.worst_k=-1"], "report.worst_k=-1: expected an integer >= 0"),
    ("predict", [*PREDICT, "batch_size=0"], "batch_size=0: expected an integer >= 1"),
    ("predict", [*PREDICT, "inference.stride=0"], "inference.stride=0: expected null or an"),
    ("predict", [*PREDICT, "inference=slide", "inference.window=0"], "inference.window=0: exp"),
    ("predict", [*PREDICT, "inference=slide", "inference.window=[64]"], "inference.window=[64]"),
    (
        "predict",
        [*PREDICT, "inference=slide", "inference.window=[64,0]"],
        "inference.window=[64, 0]: expected null, an integer >= 1 or [height, width]",
    ),
    ("predict", [*PREDICT, "inference=slide", "inference.overlap=1.0"], "inference.overlap=1.0"),
    (
        "predict",
        [*PREDICT, "inference=slide", "inference.window_batch_size=0"],
        "inference.window_batch_size=0: expected an integer >= 1",
    ),
    ("predict", [*PREDICT, "inference.tta=rot"], "inference.tta='rot': expected one of null, no"),
    ("predict", [*PREDICT, "inference.mode=tiles"], "inference.mode='tiles': expected one of"),
]


@pytest.mark.parametrize(("config_name", "overrides", "message"), BAD, ids=lambda v: str(v))
def test_bad_values_name_the_key_and_range(
    make_cfg, config_name: str, overrides: list[str], message: str
) -> None:
    cfg = make_cfg(*overrides, config_name=config_name, tiny=config_name != "predict")
    with pytest.raises(ConfigError) as caught:
        check_run_config(cfg)
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text


GOOD = [
    ("train", ["trainer.limit_val_batches=0", "callbacks.early_stopping=null"]),
    ("train", ["trainer.limit_test_batches=0", "test=false"]),
    ("train", ["trainer.limit_train_batches=0", "train=false"]),
    ("train", ["trainer.limit_train_batches=0.25", "trainer.limit_val_batches=3"]),
    ("train", ["trainer.max_epochs=-1", "trainer.gradient_clip_val=0.5"]),
    ("train", ["trainer.devices=auto"]),
    ("train", ["trainer.devices=-1"]),
    ("train", ["trainer.devices='0,1'"]),
    ("train", ["trainer.devices=[0,1]"]),
    ("train", ["data.eval_batch_size=null", "data.num_workers=null", "data.crop_size=null"]),
    ("train", ["data.splits.train.length=null", "data.num_workers=0"]),
    ("eval", [*EVAL, "trainer.limit_val_batches=0"]),
    ("predict", [*PREDICT, "inference=slide", "inference.window=[64,96]"]),
    ("predict", [*PREDICT, "inference=slide", "inference.window=64", "inference.tta=flip"]),
]


@pytest.mark.parametrize(("config_name", "overrides"), GOOD, ids=lambda v: str(v))
def test_values_in_range_pass(make_cfg, config_name: str, overrides: list[str]) -> None:
    check_run_config(make_cfg(*overrides, config_name=config_name, tiny=config_name != "predict"))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


SHIPPED = (
    [("train", [])]
    + [("train", [f"experiment={name}"]) for name in _options("experiment")]
    + [("train", [f"{group}={name}"]) for group in ("data", "debug") for name in _options(group)]
    + [("train", [f"{g}={name}"]) for g in ("trainer", "optimizer") for name in _options(g)]
    + [("eval", EVAL)]
    + [("predict", [*PREDICT, f"inference={name}"]) for name in _options("inference")]
)


@pytest.mark.parametrize(("config_name", "overrides"), SHIPPED, ids=lambda v: str(v))
def test_shipped_configs_pass(make_cfg, config_name: str, overrides: list[str]) -> None:
    required = ["data.root=/data", "data.num_classes=3"] if "data=folder" in overrides else []
    cfg = make_cfg(*overrides, *required, config_name=config_name, tiny=False)
    check_run_config(cfg)


def test_a_bad_value_becomes_one_line_and_exit_2(make_cfg, capsys) -> None:
    cfg = make_cfg("data.batch_size=-4")
    with pytest.raises(SystemExit) as caught:
        run_reporting_errors(check_run_config, cfg)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err == "litseg: error: data.batch_size=-4: expected an integer >= 1\n"


SHAPES = partial(ShapesDataset, image_size=32)
SPLITS = {"train": {"split": "train", "length": 4}, "val": {"split": "val", "length": 4}}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"batch_size": -4}, "data.batch_size=-4: expected an integer >= 1"),
        ({"batch_size": 8.0}, "data.batch_size=8.0: expected an integer >= 1"),
        ({"eval_batch_size": 0}, "data.eval_batch_size=0: expected null or an integer >= 1"),
        ({"num_workers": -2}, "data.num_workers=-2: expected null or an integer >= 0"),
        ({"crop_size": 0}, "data.crop_size=0: expected null or an integer >= 1"),
        (
            {"splits": {"train": {"split": "train", "length": -1}}},
            "data.splits.train.length=-1: expected null or an integer >= 0",
        ),
    ],
)
def test_datamodule_checks_its_arguments(arguments: dict, message: str) -> None:
    options = {"dataset": SHAPES, "splits": SPLITS, "task": "multiclass", "num_classes": 4}
    with pytest.raises(ConfigError) as caught:
        SegmentationDataModule(**{**options, **arguments})
    assert str(caught.value) == message


def test_a_zero_length_split_names_the_key(make_cfg) -> None:
    dm = build_datamodule(make_cfg("data.splits.val.length=0"))
    with pytest.raises(ConfigError, match=r"val split of data is empty \(data.splits.val.length=0"):
        dm.setup("fit")


@pytest.fixture
def unet() -> UNet:
    torch.manual_seed(0)
    return UNet(3, 4, depth=3, base_width=8).eval()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (partial(infer, stride=0), "inference.stride=0: expected an integer >= 1"),
        (partial(infer, mode="slide", window=0), "inference.window=0: expected an integer"),
        (partial(infer, mode="slide", window=(8, -8)), "inference.window=[8, -8]: expected"),
        (partial(infer, mode="slide", window=8, overlap=1), "inference.overlap=1: expected a"),
        (
            partial(infer, mode="slide", window=8, window_batch_size=0),
            "inference.window_batch_size=0: expected an integer >= 1",
        ),
        (partial(infer, mode="slide", window=8, weighting="flat"), "inference.weighting='flat'"),
        (partial(slide, window=8, batch_size=-1), "inference.window_batch_size=-1: expected"),
        (partial(whole, stride=2.5), "inference.stride=2.5: expected an integer >= 1"),
    ],
)
def test_inference_checks_its_arguments(unet: UNet, call, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        call(unet, torch.randn(1, 3, 16, 16))
    assert str(caught.value).startswith(message), caught.value


def test_whole_image_out_of_cpu_memory_says_to_slide(unet: UNet) -> None:
    # a 4M x 4M image (a view of one pixel: no memory) whose NHWC copy the allocator refuses
    huge = torch.zeros(1, 3, 1, 1).expand(1, 3, 1 << 22, 1 << 22)
    with pytest.raises(ConfigError) as caught:
        infer(unet, huge, mode="whole", stride=8)
    assert str(caught.value).startswith(
        "inference=whole ran out of memory on 1 image(s) of 4194304x4194304 pixels; "
        "use inference=slide inference.window=<crop>"
    )
    cause = caught.value.__cause__
    assert isinstance(cause, RuntimeError) and "can't allocate memory" in str(cause)
    assert cause.__traceback__ is None


class OutOfDeviceMemory(nn.Module):
    """A real module that fails as a GPU does when the activations do not fit."""

    def __init__(self, limit_pixels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.limit_pixels = limit_pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] * x.shape[-1] > self.limit_pixels:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.conv(x)


def test_whole_image_out_of_device_memory_says_to_slide() -> None:
    model = OutOfDeviceMemory(limit_pixels=32 * 32).eval()
    images = torch.randn(2, 3, 100, 90)
    with pytest.raises(ConfigError, match=r"2 image\(s\) of 100x90 pixels; use inference=slide"):
        infer(model, images, mode="whole", stride=1)
    # the advice works: windows that fit give logits at the images' own size
    out = infer(model, images, mode="slide", window=32)
    assert out.shape == (2, 2, 100, 90)


def test_other_runtime_errors_pass_through(unet: UNet) -> None:
    with pytest.raises(RuntimeError, match="channels") as caught:
        whole(unet, torch.randn(1, 5, 16, 16), stride=8)
    assert not isinstance(caught.value, ConfigError)
