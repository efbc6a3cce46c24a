"""One file per dataset; each yields ``{"image": ..., "mask": ...}`` samples."""
