"""Reading segmentation images and masks from disk, every supported format handled explicitly.

Images come out as uint8 HxWxC with the channel count the model expects; masks come out as
HxW class indices (int64). Every failure is a DataError that names the file.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from litseg.data.encoding import MaskEncoding, legacy_encoding
from litseg.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")


def list_files(folder: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Files in ``folder`` with one of ``suffixes``, by stem (one file per stem)."""
    if not folder.is_dir():
        raise DataError(f"folder {folder} does not exist; expected a folder of images")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in suffixes or path.name.startswith("."):
            continue
        if path.stem in found:
            raise DataError(
                f"{path} and {found[path.stem]} share the stem '{path.stem}'; "
                "expected one file per stem"
            )
        found[path.stem] = path
    return found


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(f"{path} is unreadable ({err}); expected a complete image file") from None
    return image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header only: cheap enough to run on every file at setup."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise DataError(f"{path} is unreadable ({err}); expected an image file") from None


def _to_uint8(array: np.ndarray, path: Path) -> np.ndarray:
    """8-bit stays; 16-bit (and 32-bit integer) scales its full range onto 0..255."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype in (np.uint16, np.int32) or array.dtype.kind in "ui":
        # PIL reads 16-bit PNGs as int32 ("I") or uint16 ("I;16"): both span 0..65535.
        return np.round(np.clip(array, 0, 65535) / 257.0).astype(np.uint8)
    if array.dtype.kind == "f":
        return np.round(np.clip(array, 0.0, 1.0) * 255).astype(np.uint8)
    raise DataError(f"{path} has pixel type {array.dtype}; expected 8- or 16-bit integers")


def read_image(path: Path, channels: int = 3) -> np.ndarray:
    """An image as uint8 HxWxC with ``channels`` 1 (gray) or 3 (RGB).

    Gray images are repeated to RGB when 3 channels are wanted; RGB is converted to luminance
    when 1 is wanted; an alpha channel is dropped; 16-bit images are scaled to 8 bits.
    """
    if channels not in (1, 3):
        raise DataError(f"data.in_channels={channels}; file images support 1 or 3")
    image = _open(path)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = _to_uint8(array, path)[..., None]
    elif array.ndim == 3 and array.shape[2] in (2, 4):  # LA / RGBA: drop alpha
        array = _to_uint8(array[..., :-1], path)
    elif array.ndim == 3 and array.shape[2] in (1, 3):
        array = _to_uint8(array, path)
    else:
        raise DataError(f"{path} has shape {array.shape}; expected gray, RGB or RGBA")
    if channels == 3 and array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    elif channels == 1 and array.shape[2] == 3:
        gray = array.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        array = np.round(gray).astype(np.uint8)[..., None]
    return np.ascontiguousarray(array)


def read_stored_mask(path: Path, colour: bool = False) -> np.ndarray:
    """A mask file's stored values, not yet mapped to classes: HxW int64 for index masks
    (mode L/I, or the palette index of mode P), HxWx3 uint8 RGB when ``colour``."""
    image = _open(path)
    if colour:
        return np.asarray(image.convert("RGB"))
    if image.mode in ("RGB", "RGBA"):
        raise DataError(
            f"{path} is an {image.mode} mask; expected an index or palette PNG, "
            "or set data.mask_palette (one [r, g, b] per class) for colour masks"
        )
    array = np.asarray(image)
    if array.ndim != 2:
        raise DataError(f"{path} has shape {array.shape}; expected a single-channel mask")
    return array.astype(np.int64)


def read_mask(
    path: Path,
    colors: Mapping[int, Sequence[int]] | None = None,
    value_map: Mapping[int, int] | None = None,
    encoding: MaskEncoding | None = None,
) -> np.ndarray:
    """A mask as HxW int64 class indices.

    Index PNGs (mode L/I) and palette PNGs (mode P: the palette index is the class) are read
    as they are unless ``encoding`` (see :mod:`litseg.data.encoding`) maps stored values or
    colours to classes. ``colors`` (class -> [r, g, b]) and ``value_map`` (listed raw values
    renamed, others kept) are the older spellings of ``data.mask_palette`` and
    ``data.mask_values``.
    """
    if encoding is None:
        encoding = legacy_encoding(colors, value_map)
    stored = read_stored_mask(path, colour=encoding is not None and encoding.colour)
    return stored if encoding is None else encoding.decode(stored, path)
