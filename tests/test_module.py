"""SegmentationModule: auxiliary losses, test-time pictures and metrics, class weights."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from litseg.builders import build_module
from litseg.data.class_frequency import median_frequency_weights
from litseg.errors import ConfigError
from litseg.losses.ce import CrossEntropyLoss
from litseg.module import SegmentationModule
from litseg.train import train


class TwoHeads(nn.Module):
    """A tiny net with torchvision's {"out", "aux"} outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.out, self.aux = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.out(x), "aux": self.aux(x)}


def module(net: nn.Module, **kwargs) -> SegmentationModule:
    return SegmentationModule(
        net, CrossEntropyLoss(), "multiclass", 3, optimizer=torch.optim.SGD, **kwargs
    )


@pytest.mark.parametrize("aux_weight", [0.0, 0.4, 1.0])
def test_aux_loss_is_added_with_its_weight(aux_weight: float) -> None:
    net = TwoHeads()
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
    logits, loss = module(net, aux_weight=aux_weight)._loss(net(x), y)
    ce = nn.functional.cross_entropy
    torch.testing.assert_close(loss, ce(net.out(x), y) + aux_weight * ce(net.aux(x), y))
    torch.testing.assert_close(logits, net.out(x))
    loss.backward()
    grad = net.aux.weight.grad
    assert (grad is not None and grad.abs().sum() > 0) == (aux_weight > 0)


def test_forward_returns_main_logits_only() -> None:
    net = TwoHeads()
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(module(net)(x), net.out(x))


def test_median_frequency_by_hand() -> None:
    # class 0: 4 of the 8 pixels of the 2 images holding it -> 0.5; class 1: 1/4; class 2: 3/4
    masks = [np.array([[0, 0], [0, 1]]), np.array([[0, 2], [2, 2]]), np.array([[9, 9], [9, 9]])]
    weights = median_frequency_weights(masks, 4, ignore_index=9)
    np.testing.assert_allclose(weights, [1.0, 2.0, 2 / 3, 0.0])


def test_median_frequency_from_the_training_set(make_cfg) -> None:
    cfg = make_cfg("loss=dice_ce", "+loss.terms.ce.class_weights=median_frequency")
    weights = build_module(cfg).loss_fn.terms["ce"].weight
    assert weights.shape == (4,) and (weights > 0).all()
    assert weights[0] < 1 and weights[0] == weights.min()  # background: the most frequent
    cfg = make_cfg("loss=dice", "loss.class_weights=median_frequency", "data.task=binary")
    with pytest.raises(ConfigError, match="median_frequency needs data.task=multiclass"):
        build_module(cfg)


def test_plain_losses_reject_unresolved_median_frequency(make_cfg) -> None:
    cfg = make_cfg("loss=ce", "loss.class_weights=median_frequency")
    with pytest.raises(Exception, match="median_frequency") as err:  # Hydra wraps it
        instantiate(cfg.loss)
    assert isinstance(err.value.__cause__ or err.value, ConfigError)


@pytest.mark.slow
def test_test_run_saves_confusion_matrix_and_logs_boundary_metrics(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg(
        "module.boundary_metric=true",
        "logger=wandb",
        "trainer.max_epochs=1",
        "data.splits.train.length=8",
        "data.splits.val.length=4",
        "data.splits.test.length=4",
    )
    metrics = train(cfg)["metrics"]
    import wandb

    wandb.finish()
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    for key in ("test/HD95", "test/mean_class_acc", "val/mean_class_acc", "test/dice_circle"):
        assert key in metrics, sorted(metrics)
    assert 0 <= metrics["test/mean_class_acc"] <= 1
    images = list((tmp_path / "wandb").glob("offline-run-*/files/media/images/test/*.png"))
    assert images, list((tmp_path / "wandb").rglob("*.png"))
