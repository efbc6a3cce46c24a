"""Moved to :mod:`litseg.data.class_frequency` (class-frequency statistics are data); these
names stay importable from here for code written against earlier versions."""

from litseg.data.class_frequency import (
    MEDIAN_FREQUENCY,
    median_frequency_weights,
    training_masks,
    weights_from_counts,
)

__all__ = ["MEDIAN_FREQUENCY", "median_frequency_weights", "training_masks", "weights_from_counts"]
