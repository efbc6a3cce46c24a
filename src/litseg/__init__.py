"""litseg: semantic segmentation research with PyTorch Lightning and Hydra."""

from litseg.utils.resolvers import register_resolvers

__version__ = "0.1.0"

register_resolvers()
