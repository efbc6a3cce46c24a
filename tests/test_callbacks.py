"""litseg's callbacks: channels_last and torch.compile without model code, and the random state
that makes a resumed run replay an uninterrupted one."""

import random

import numpy as np
import pytest
import torch

from litseg.builders import build_module
from litseg.callbacks import PerformanceOptions, RngStateInCheckpoint
from litseg.errors import ConfigError
from litseg.train import train


@pytest.mark.slow
def test_channels_last_and_compile_keep_the_checkpoint_keys(make_cfg) -> None:
    cfg = make_cfg(
        "trainer.fast_dev_run=true",
        "callbacks.perf.channels_last=true",
        "callbacks.perf.compile=true",
        "+callbacks.perf.compile_kwargs.backend=eager",  # no C++ toolchain needed
    )
    result = train(cfg)
    net = result["objects"]["module"].net
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert net._compiled_call_impl is not None
    eager = build_module(cfg)
    assert list(result["objects"]["module"].state_dict()) == list(eager.state_dict())
    assert 0.0 <= result["metrics"]["val/mIoU"] <= 1.0


def test_batches_become_channels_last_only_when_asked() -> None:
    batch = {"image": torch.rand(2, 3, 8, 8), "mask": torch.zeros(2, 8, 8, dtype=torch.long)}
    PerformanceOptions(channels_last=False).on_train_batch_start(None, None, batch, 0)
    assert not batch["image"].is_contiguous(memory_format=torch.channels_last)
    PerformanceOptions(channels_last=True).on_validation_batch_start(None, None, batch, 0)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("setting, nhwc", [("auto", True), ("false", False)])
def test_channels_last_auto_is_on_for_a_cpu_run(make_cfg, setting, nhwc) -> None:
    cfg = make_cfg("trainer.fast_dev_run=true", f"callbacks.perf.channels_last={setting}")
    net = train(cfg)["objects"]["module"].net
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) is nhwc


def test_channels_last_refuses_other_values() -> None:
    with pytest.raises(ConfigError, match="callbacks.perf.channels_last='yes'"):
        PerformanceOptions(channels_last="yes")


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path) -> None:
    callback = RngStateInCheckpoint()
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.save({"state": callback.state_dict()}, tmp_path / "c.ckpt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(7), np.random.seed(8), random.seed(9)
    state = torch.load(tmp_path / "c.ckpt", weights_only=True)["state"]
    RngStateInCheckpoint().load_state_dict(state)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_wandb_pictures_label_the_mask_layers_for_binary_data(make_cfg) -> None:
    from litseg.callbacks import WandbPredictionImages

    cfg = make_cfg("data.task=binary", "loss=dice_bce")
    module = build_module(cfg)
    images = torch.rand(2, 3, 16, 16)
    masks = torch.randint(0, 2, (2, 16, 16))
    logits = torch.randn(2, 1, 16, 16)

    class Data:
        mean, std = [0.5] * 3, [0.25] * 3

    pictures = WandbPredictionImages.pictures(images, masks, logits, module, Data())
    assert len(pictures) == 2
    layers = pictures[0]._masks
    assert set(layers) == {"truth", "prediction"}
    # wandb keeps the given mask data and labels on the layer (private attribute, no accessor)
    truth, prediction = layers["truth"]._val, layers["prediction"]._val
    assert truth["class_labels"] == prediction["class_labels"] == {0: "background", 1: "shape"}
    assert np.array_equal(truth["mask_data"], masks[0].numpy())
    expected = (logits[0, 0].sigmoid() > 0.5).long().numpy()
    assert np.array_equal(prediction["mask_data"], expected)
