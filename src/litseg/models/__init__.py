"""Segmentation models: every one maps (N, C_in, H, W) images to (N, num_classes, H, W) logits."""
