"""Segmentation losses from logits, for binary, multiclass and multilabel tasks.

One module per loss holds its maths and its class (``dice.py``: ``DiceLoss``); ``base.py``
holds the contract every loss follows (``supported_tasks``, the task check, the base classes)
and ``functional.py`` the maths the region losses share. A config names a loss by its module,
e.g. ``_target_: litseg.losses.dice.DiceLoss`` in ``conf/loss/dice.yaml``.
"""

from litseg.losses.base import (
    RegionLoss,
    SegmentationLoss,
    check_loss_fits_task,
    supported_tasks,
)
from litseg.losses.bce import BCELoss
from litseg.losses.ce import CrossEntropyLoss
from litseg.losses.combined import WeightedSumLoss
from litseg.losses.dice import DiceLoss
from litseg.losses.focal import FocalLoss
from litseg.losses.jaccard import JaccardLoss
from litseg.losses.lovasz import LovaszLoss
from litseg.losses.tversky import TverskyLoss

__all__ = [
    "BCELoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "FocalLoss",
    "JaccardLoss",
    "LovaszLoss",
    "RegionLoss",
    "SegmentationLoss",
    "TverskyLoss",
    "WeightedSumLoss",
    "check_loss_fits_task",
    "supported_tasks",
]
