"""Any folder of images and masks with matching file stems.

Two layouts:

    root/{train,val,test}/{images,masks}/   one folder per split (test optional)
    root/{images,masks}/                    one pool, split into train/val by val_fraction
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from litseg.data.checks import pairs_in_folders
from litseg.data.datasets.paired import PairedFilesDataset
from litseg.data.splits import check_val_fraction, fraction_split
from litseg.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def folder_pairs(
    root: Path,
    split: str,
    val_fraction: float = 0.2,
    seed: int = 0,
    images: str = "images",
    masks: str = "masks",
) -> tuple[list[tuple[Path, Path]], str]:
    """The (image, mask) pairs of ``split`` under ``root`` and where they were found."""
    if split not in SPLITS:
        raise ConfigError(f"data split {split!r}; expected one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DataError(
            f"data.root={root} does not exist; expected a folder holding "
            f"{{train,val,test}}/{{{images},{masks}}} or {{{images},{masks}}}"
        )
    if (root / split / images).is_dir() or (root / "train").is_dir():
        base = root / split
        if not (base / images).is_dir():
            raise DataError(
                f"{base / images} does not exist; expected the {split} images "
                f"there (layout root/{split}/{{{images},{masks}}})"
            )
        if not (base / masks).is_dir():
            raise DataError(f"{base / masks} does not exist; expected the {split} masks there")
        pairs = pairs_in_folders(base / images, base / masks)
        return pairs, str(base)
    if not (root / images).is_dir() or not (root / masks).is_dir():
        raise DataError(
            f"data.root={root} has neither train/{images} nor {images} and {masks}; "
            f"expected root/{{train,val,test}}/{{{images},{masks}}} or "
            f"root/{{{images},{masks}}}"
        )
    if split == "test":
        raise DataError(
            f"data.root={root} is a single {images}/{masks} pool with no test "
            "split; remove data.splits.test or add root/test/{images,masks}"
        )
    check_val_fraction(val_fraction)  # before listing a large folder
    pairs = pairs_in_folders(root / images, root / masks)
    chosen = fraction_split(len(pairs), split, val_fraction, seed)
    return [pairs[i] for i in chosen], f"{root} ({split} part, val_fraction={val_fraction})"


class FolderDataset(PairedFilesDataset):
    """Images and masks from a folder tree (see the module docstring for the layouts).

    Images may be png/jpg/tif, gray/RGB/RGBA, 8- or 16-bit (converted to ``in_channels``
    uint8 channels). Masks may be index or palette PNGs whose values are the classes, index
    masks in another encoding declared by ``mask_values`` (e.g. 0/255 binary masks:
    ``{0: 0, 255: 1}``), or RGB colour masks declared by ``mask_palette``.

    Args:
        root: the dataset folder.
        split: train, val or test.
        val_fraction, seed: the share of a single pool that becomes val, and the fixed seed
            that picks it (the same files on every run and machine).
        images, masks: the names of the image and mask sub-folders.
        num_classes, ignore_index, in_channels, colors, value_map, transform, mask_values,
            mask_palette: see :class:`PairedFilesDataset` and :mod:`litseg.data.encoding`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_classes: int = 2,
        ignore_index: int | None = None,
        in_channels: int = 3,
        val_fraction: float = 0.2,
        seed: int = 0,
        images: str = "images",
        masks: str = "masks",
        colors: Mapping[int, Sequence[int]] | None = None,
        value_map: Mapping[int, int] | None = None,
        transform: Callable[..., dict[str, Any]] | None = None,
        mask_values: Mapping[int, int] | None = None,
        mask_palette: Sequence[Sequence[int]] | Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        pairs, where = folder_pairs(Path(root), split, val_fraction, seed, images, masks)
        super().__init__(
            pairs,
            num_classes,
            ignore_index,
            in_channels,
            colors,
            value_map,
            transform,
            where=where,
            mask_values=mask_values,
            mask_palette=mask_palette,
        )
