"""litseg's callbacks: channels_last and torch.compile without model code, and the random state
that makes a resumed run replay an uninterrupted one."""

import random

import numpy as np
import pytest
import torch

from litseg.callbacks import PerformanceOptions, RngStateInCheckpoint
from litseg.train import train
from litseg.utils.instantiate import build_module


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
