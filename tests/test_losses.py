"""Losses agree with independent references (smp, torch) and honour ignore_index."""

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from litseg.errors import ConfigError
from litseg.losses import check_loss_fits_task
from litseg.losses.bce import BCELoss
from litseg.losses.ce import CrossEntropyLoss
from litseg.losses.combined import WeightedSumLoss
from litseg.losses.dice import DiceLoss

torch.manual_seed(0)


# smp >= 0.5 writes Dice as (I + s) / (I + (FP + FN) / 2 + s) = (2I + 2s) / (|P| + |T| + 2s):
# its smoothing term is half of the classic (2I + s) / (|P| + |T| + s) that litseg uses.
SMP_SMOOTH = 0.5


def multiclass_batch(c: int = 4, ignore: int | None = None):
    logits = torch.randn(2, c, 16, 16, dtype=torch.double, requires_grad=True)
    target = torch.arange(2 * 16 * 16).reshape(2, 16, 16) % c  # every class present
    target = target[:, torch.randperm(16)]
    if ignore is not None:
        target = target.clone()
        target[:, :3] = ignore
    return logits, target


@pytest.mark.parametrize("ignore", [None, 255])
def test_dice_multiclass_matches_smp(ignore: int | None) -> None:
    logits, target = multiclass_batch(ignore=ignore)
    ours = DiceLoss("multiclass", ignore_index=ignore, smooth=1.0)(logits, target)
    ref = smp.losses.DiceLoss(
        "multiclass", from_logits=True, smooth=SMP_SMOOTH * 1.0, eps=1e-7, ignore_index=ignore
    )(logits, target)
    torch.testing.assert_close(ours, ref)


def test_dice_binary_matches_smp() -> None:
    logits = torch.randn(3, 1, 20, 24, dtype=torch.double)
    target = (torch.rand(3, 20, 24) > 0.6).long()
    ours = DiceLoss("binary", smooth=0.5)(logits, target)
    ref = smp.losses.DiceLoss("binary", from_logits=True, smooth=SMP_SMOOTH * 0.5, eps=1e-7)(
        logits, target.unsqueeze(1)
    )
    torch.testing.assert_close(ours, ref)


def test_dice_perfect_prediction_is_near_zero() -> None:
    target = torch.randint(0, 3, (2, 8, 8))
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert DiceLoss("multiclass")(logits, target) < 1e-3


@pytest.mark.parametrize(
    "loss",
    [
        DiceLoss("multiclass", ignore_index=9),
        CrossEntropyLoss(ignore_index=9),
        WeightedSumLoss(
            {"d": DiceLoss("multiclass", ignore_index=9), "c": CrossEntropyLoss(ignore_index=9)}
        ),
    ],
    ids=["dice", "ce", "dice_ce"],
)
def test_ignored_pixels_do_not_count(loss: torch.nn.Module) -> None:
    logits, target = multiclass_batch(ignore=9)
    changed = logits.detach().clone()
    changed[:, :, :3] = torch.randn_like(changed[:, :, :3]) * 10
    torch.testing.assert_close(loss(logits, target), loss(changed, target))


def test_bce_matches_torch_on_valid_pixels() -> None:
    logits = torch.randn(2, 1, 10, 10, dtype=torch.double)
    target = (torch.rand(2, 10, 10) > 0.5).long()
    target[0, 0] = 255
    ours = BCELoss("binary", ignore_index=255, pos_weight=2.0)(logits, target)
    valid = target != 255
    ref = F.binary_cross_entropy_with_logits(
        logits[:, 0][valid], target[valid].double(), pos_weight=torch.tensor(2.0).double()
    )
    torch.testing.assert_close(ours, ref)


def test_ce_matches_torch() -> None:
    logits, target = multiclass_batch(ignore=7)
    weights = [1.0, 2.0, 0.5, 1.5]
    ours = CrossEntropyLoss(ignore_index=7, class_weights=weights, label_smoothing=0.1)(
        logits, target
    )
    ref = F.cross_entropy(
        logits, target, weight=torch.tensor(weights).double(), ignore_index=7, label_smoothing=0.1
    )
    torch.testing.assert_close(ours, ref)


def test_weighted_sum_is_the_weighted_sum() -> None:
    logits, target = multiclass_batch()
    dice, ce = DiceLoss("multiclass"), CrossEntropyLoss()
    total = WeightedSumLoss({"dice": dice, "ce": ce}, {"dice": 0.3, "ce": 2.0})
    torch.testing.assert_close(
        total(logits, target), 0.3 * dice(logits, target) + 2.0 * ce(logits, target)
    )
    assert total.supported_tasks == ("multiclass",)


def test_weighted_sum_rejects_unknown_weight_names() -> None:
    with pytest.raises(ConfigError, match="loss.weights"):
        WeightedSumLoss({"dice": DiceLoss()}, {"bce": 1.0})


@pytest.mark.parametrize(
    ("loss", "task"), [(BCELoss("binary"), "multiclass"), (CrossEntropyLoss(), "binary")]
)
def test_loss_task_mismatch_names_both(loss: torch.nn.Module, task: str) -> None:
    with pytest.raises(ConfigError, match=rf"loss=mine does not fit data.task={task}"):
        check_loss_fits_task(loss, task, "mine")


def test_gradients_are_finite_and_gradcheck() -> None:
    logits, target = multiclass_batch(c=3)
    small_logits = logits[:1, :, :4, :4].detach().clone().requires_grad_(True)
    small_target = target[:1, :4, :4] % 3
    for loss in (DiceLoss("multiclass"), CrossEntropyLoss()):
        assert torch.autograd.gradcheck(lambda x, f=loss: f(x, small_target), (small_logits,))
    multi = torch.randn(1, 2, 4, 4, dtype=torch.double, requires_grad=True)
    mtarget = (torch.rand(1, 2, 4, 4) > 0.5).long()
    for loss in (DiceLoss("multilabel"), BCELoss("multilabel")):
        assert torch.autograd.gradcheck(lambda x, f=loss: f(x, mtarget), (multi,))


def test_loss_configs_instantiate_for_their_task(make_cfg) -> None:
    for name, task in [
        ("dice", "multiclass"),
        ("ce", "multiclass"),
        ("dice_ce", "multiclass"),
        ("bce", "binary"),
        ("dice_bce", "binary"),
    ]:
        cfg = make_cfg(f"loss={name}", f"data.task={task}")
        loss = instantiate(cfg.loss)
        check_loss_fits_task(loss, task, name)
