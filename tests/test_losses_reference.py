"""Every loss against an independent reference (MONAI, smp, torchvision) on random inputs.

Cases: random batches, ignore_index, a class absent from the target, all-background targets.
"""

import monai.losses
import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchvision.ops import sigmoid_focal_loss

from litseg.errors import ConfigError
from litseg.losses import check_loss_fits_task
from litseg.losses.dice import DiceLoss
from litseg.losses.focal import FocalLoss
from litseg.losses.jaccard import JaccardLoss
from litseg.losses.lovasz import LovaszLoss
from litseg.losses.tversky import TverskyLoss

C = 4
IGNORE = 255


def batch(case: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Double logits (2, C, 12, 14) and class-index targets for one named case."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, C, 12, 14, generator=g, dtype=torch.double) * 2
    target = torch.randint(0, C, (2, 12, 14), generator=g)
    if case == "ignore":
        target[:, :4] = IGNORE
    elif case == "absent":  # class 2 never in the target
        target[target == 2] = 3
    elif case == "background":
        target.zero_()
    return logits, target


def binary_batch(case: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 1, 12, 14, generator=g, dtype=torch.double) * 2
    target = (torch.rand(2, 12, 14, generator=g) > 0.6).long()
    if case == "ignore":
        target[:, :3] = IGNORE
    elif case == "background":
        target.zero_()
    return logits, target


def onehot_valid(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MONAI-style one-hot targets and a validity mask (N, 1, H, W) for ignored pixels."""
    valid = (target != IGNORE).unsqueeze(1).double()
    safe = target.masked_fill(target == IGNORE, 0)
    return F.one_hot(safe, C).permute(0, 3, 1, 2).double() * valid, valid


def monai_region(logits: torch.Tensor, target: torch.Tensor, loss) -> torch.Tensor:
    """Per-class MONAI loss (C,) from softmax probabilities with ignored pixels zeroed."""
    onehot, valid = onehot_valid(target)
    probs = logits.softmax(1) * valid
    return loss(probs, onehot).reshape(-1)


CASES = ["random", "ignore", "absent", "background"]


@pytest.mark.parametrize("case", CASES)
def test_dice_matches_monai(case: str) -> None:
    logits, target = batch(case)
    ignore = IGNORE if case == "ignore" else None
    ref = monai_region(
        logits,
        target,
        monai.losses.DiceLoss(batch=True, smooth_nr=1.0, smooth_dr=1.0, reduction="none"),
    )
    ours = DiceLoss("multiclass", ignore_index=ignore, smooth=1.0)(logits, target)
    torch.testing.assert_close(ours, ref.mean())
    squared = DiceLoss("multiclass", ignore_index=ignore, squared=True)(logits, target)
    ref_sq = monai_region(
        logits,
        target,
        monai.losses.DiceLoss(
            batch=True, squared_pred=True, smooth_nr=1.0, smooth_dr=1.0, reduction="none"
        ),
    )
    torch.testing.assert_close(squared, ref_sq.mean())
    weights = [1.0, 3.0, 0.5, 2.0]
    weighted = DiceLoss("multiclass", ignore_index=ignore, class_weights=weights)(logits, target)
    torch.testing.assert_close(weighted, (ref * torch.tensor(weights)).sum() / sum(weights))


@pytest.mark.parametrize("case", CASES)
def test_dice_absent_options(case: str) -> None:
    """smooth (default) keeps MONAI's smoothed score; zero matches smp; skip drops the class."""
    logits, target = batch(case)
    ignore = IGNORE if case == "ignore" else None
    per_class = monai_region(
        logits,
        target,
        monai.losses.DiceLoss(batch=True, smooth_nr=1.0, smooth_dr=1.0, reduction="none"),
    )
    present = torch.stack([(target == c).any() for c in range(C)])
    assert DiceLoss().absent == "smooth"
    zero = DiceLoss("multiclass", ignore_index=ignore, absent="zero")(logits, target)
    ref_smp = smp.losses.DiceLoss(
        "multiclass", from_logits=True, smooth=0.5, eps=1e-7, ignore_index=ignore
    )(logits, target)
    torch.testing.assert_close(zero, ref_smp)
    skip = DiceLoss("multiclass", ignore_index=ignore, absent="skip")(logits, target)
    torch.testing.assert_close(skip, per_class[present].mean())
    if not present.all():  # the three options really differ when a class is absent
        smooth = DiceLoss("multiclass", ignore_index=ignore)(logits, target)
        assert len({round(float(v), 6) for v in (smooth, zero, skip)}) == 3


def test_dice_absent_class_counts_as_documented() -> None:
    """Only the foreground class counts and it is absent: the options decide the loss."""
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    quiet = torch.zeros(1, 2, 8, 8)
    quiet[:, 0] = 20  # predicts background: right
    loud = quiet.flip(1)  # predicts the absent class everywhere: wrong
    smooth = DiceLoss("multiclass", include_background=False)  # absent="smooth" by default
    assert smooth(quiet, target) < 1e-3 and smooth(loud, target) > 0.9
    for absent in ("zero", "skip"):
        loss = DiceLoss("multiclass", include_background=False, absent=absent)
        assert loss(quiet, target) == 0 and loss(loud, target) == 0


@pytest.mark.parametrize("case", CASES)
def test_jaccard_matches_smp_and_monai(case: str) -> None:
    logits, target = batch(case)
    ignore = IGNORE if case == "ignore" else None
    ours = JaccardLoss("multiclass", ignore_index=ignore, smooth=1.0)(logits, target)
    # MONAI's jaccard is (2I + nr) / (2U + dr): nr = dr = 2 gives (I + 1) / (U + 1).
    ref = monai_region(
        logits,
        target,
        monai.losses.DiceLoss(
            batch=True, jaccard=True, smooth_nr=2.0, smooth_dr=2.0, reduction="none"
        ),
    )
    torch.testing.assert_close(ours, ref.mean())
    zero = JaccardLoss("multiclass", ignore_index=ignore, absent="zero")(logits, target)
    ref_smp = smp.losses.JaccardLoss("multiclass", from_logits=True, smooth=1.0, eps=1e-7)
    if ignore is None:  # smp's JaccardLoss has no ignore_index
        torch.testing.assert_close(zero, ref_smp(logits, target))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("alpha", "beta"), [(0.3, 0.7), (0.5, 0.5), (0.9, 0.1)])
def test_tversky_matches_monai(case: str, alpha: float, beta: float) -> None:
    logits, target = batch(case)
    ignore = IGNORE if case == "ignore" else None
    ours = TverskyLoss("multiclass", ignore_index=ignore, alpha=alpha, beta=beta)(logits, target)
    ref = monai_region(
        logits,
        target,
        monai.losses.TverskyLoss(
            alpha=alpha, beta=beta, batch=True, smooth_nr=1.0, smooth_dr=1.0, reduction="none"
        ),
    )
    torch.testing.assert_close(ours, ref.mean())


@pytest.mark.parametrize("case", ["random", "background"])
def test_tversky_binary_matches_smp(case: str) -> None:
    logits, target = binary_batch(case)
    ours = TverskyLoss("binary", alpha=0.2, beta=0.8, absent="zero")(logits, target)
    ref = smp.losses.TverskyLoss("binary", alpha=0.2, beta=0.8, smooth=1.0, eps=1e-7)
    torch.testing.assert_close(ours, ref(logits, target.unsqueeze(1)))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_multiclass_matches_monai(case: str, gamma: float) -> None:
    logits, target = batch(case)
    ignore = IGNORE if case == "ignore" else None
    ours = FocalLoss("multiclass", ignore_index=ignore, gamma=gamma)(logits, target)
    onehot, valid = onehot_valid(target)
    per_pixel = monai.losses.FocalLoss(use_softmax=True, gamma=gamma, reduction="none")(
        logits, onehot
    ).sum(1, keepdim=True)
    torch.testing.assert_close(ours, (per_pixel * valid).sum() / valid.sum())
    weights = [0.5, 2.0, 1.0, 3.0]
    weighted = FocalLoss("multiclass", ignore_index=ignore, gamma=0.0, class_weights=weights)
    ref_ce = F.cross_entropy(
        logits, target, weight=torch.tensor(weights).double(), ignore_index=ignore or -100
    )
    if case != "background":
        torch.testing.assert_close(weighted(logits, target), ref_ce)


@pytest.mark.parametrize("case", ["random", "ignore", "background"])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_focal_binary_matches_torchvision(case: str, alpha: float | None) -> None:
    logits, target = binary_batch(case)
    ignore = IGNORE if case == "ignore" else None
    ours = FocalLoss("binary", ignore_index=ignore, gamma=2.0, alpha=alpha)(logits, target)
    valid = target != IGNORE
    ref = sigmoid_focal_loss(
        logits[:, 0][valid], target[valid].double(), alpha=-1 if alpha is None else alpha
    ).mean()
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_softmax_matches_smp(case: str, per_image: bool) -> None:
    logits, target = batch(case)
    logits = logits.float()  # smp's Lovász mixes dtypes on double input
    ignore = IGNORE if case == "ignore" else None
    ours = LovaszLoss("multiclass", ignore_index=ignore, per_image=per_image)(logits, target)
    ref = smp.losses.LovaszLoss("multiclass", per_image=per_image, ignore_index=ignore)
    torch.testing.assert_close(ours, ref(logits, target))


@pytest.mark.parametrize("case", ["random", "ignore", "background"])
def test_lovasz_hinge_matches_smp(case: str) -> None:
    logits, target = binary_batch(case)
    logits = logits.float()
    ignore = IGNORE if case == "ignore" else None
    ours = LovaszLoss("binary", ignore_index=ignore)(logits, target)
    ref = smp.losses.LovaszLoss("binary", ignore_index=ignore)(logits, target.unsqueeze(1))
    torch.testing.assert_close(ours, ref)


def test_lovasz_multilabel_averages_channels() -> None:
    logits = torch.randn(2, 3, 10, 10)
    target = (torch.rand(2, 3, 10, 10) > 0.5).long()
    ours = LovaszLoss("multilabel")(logits, target)
    ref = smp.losses.LovaszLoss("binary")
    per_channel = [ref(logits[:, c : c + 1], target[:, c : c + 1]) for c in range(3)]
    torch.testing.assert_close(ours, torch.stack(per_channel).mean())


@pytest.mark.parametrize(
    "loss",
    [
        DiceLoss("multiclass", ignore_index=9, absent="skip"),
        JaccardLoss("multiclass", ignore_index=9),
        TverskyLoss("multiclass", ignore_index=9),
        FocalLoss("multiclass", ignore_index=9),
        LovaszLoss("multiclass", ignore_index=9),
    ],
    ids=["dice", "jaccard", "tversky", "focal", "lovasz"],
)
def test_ignored_pixels_do_not_count(loss: torch.nn.Module) -> None:
    logits, target = batch("random")
    target[:, :3] = 9
    changed = logits.clone()
    changed[:, :, :3] = torch.randn_like(changed[:, :, :3]) * 10
    torch.testing.assert_close(loss(logits, target), loss(changed, target))


@pytest.mark.parametrize(
    "make",
    [
        lambda task: DiceLoss(task, absent="skip"),
        lambda task: JaccardLoss(task),
        lambda task: TverskyLoss(task, gamma=1.5),
        lambda task: FocalLoss(task, alpha=0.25 if task != "multiclass" else None),
        lambda task: LovaszLoss(task),
    ],
    ids=["dice", "jaccard", "tversky", "focal", "lovasz"],
)
@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_gradcheck_on_tiny_double_inputs(make, task: str) -> None:
    g = torch.Generator().manual_seed(3)
    channels = {"binary": 1, "multiclass": 3, "multilabel": 2}[task]
    logits = torch.randn(2, channels, 3, 3, generator=g, dtype=torch.double, requires_grad=True)
    if task == "multiclass":
        target = torch.randint(0, 3, (2, 3, 3), generator=g)
    elif task == "binary":
        target = torch.randint(0, 2, (2, 3, 3), generator=g)
    else:
        target = torch.randint(0, 2, (2, channels, 3, 3), generator=g)
    loss = make(task)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits.detach().requires_grad_(),))


def test_string_class_weights_need_build_module() -> None:
    with pytest.raises(ConfigError, match="median_frequency"):
        DiceLoss("multiclass", class_weights="median_frequency")


def test_wrong_number_of_class_weights_is_named() -> None:
    logits, target = batch("random")
    with pytest.raises(ConfigError, match="loss.class_weights has 2 values"):
        JaccardLoss("multiclass", class_weights=[1.0, 2.0])(logits, target)


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("focal", "multiclass"),
        ("focal", "binary"),
        ("tversky", "multiclass"),
        ("jaccard", "binary"),
        ("lovasz", "multiclass"),
        ("lovasz", "binary"),
        ("dice_focal", "multiclass"),
        ("dice_focal", "binary"),
    ],
)
def test_new_loss_configs_run_for_their_task(make_cfg, name: str, task: str) -> None:
    cfg = make_cfg(f"loss={name}", f"data.task={task}")
    loss = instantiate(cfg.loss)
    check_loss_fits_task(loss, task, name)
    channels = 1 if task == "binary" else 4
    logits = torch.randn(2, channels, 8, 8, requires_grad=True)
    target = torch.randint(0, 2 if task == "binary" else 4, (2, 8, 8))
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and logits.grad.abs().sum() > 0
