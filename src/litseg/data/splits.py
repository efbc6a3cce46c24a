"""Train/val splits of one pool of items: the one helper every dataset with a single pool uses.

data=folder, pets, coco and labelme cut a pool (a folder, the official trainval list, one
annotation file) into train and val by ``val_fraction`` with a fixed seed, so the same items
land in val on every run and machine.
"""

import numpy as np

from litseg.errors import ConfigError


def check_val_fraction(val_fraction: float) -> None:
    """Refuse a ``data.val_fraction`` outside (0, 1) with one line naming the key."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={val_fraction}; expected a number in (0, 1)")


def fraction_split(count: int, split: str, val_fraction: float, seed: int) -> list[int]:
    """The sorted indices of ``split`` (train or val) when a pool of ``count`` items is split
    by ``val_fraction`` with the fixed ``seed``.

    Val takes the first ``max(1, round(count * val_fraction))`` items of the seed's
    permutation (none when the pool holds one item), train the rest; this order is kept so
    that runs of earlier litseg versions used the same split.
    """
    check_val_fraction(val_fraction)
    order = np.random.default_rng(seed).permutation(count)
    n_val = max(1, round(count * val_fraction)) if count > 1 else 0
    chosen = order[:n_val] if split == "val" else order[n_val:]
    return sorted(int(i) for i in chosen)
