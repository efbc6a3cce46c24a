"""Datasets, augmentation pipelines and the generic SegmentationDataModule."""
