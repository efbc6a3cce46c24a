"""How classes are stored in mask files, both ways: ``data.mask_values`` and ``data.mask_palette``.

- ``mask_values``: stored pixel value -> class index, e.g. ``{0: 0, 255: 1}`` for 0/255
  binary masks or ``{0: 0, 128: 1, 255: 2}``. Several stored values may name one class
  (``{0: 0, 255: 1, 1: 1}`` reads 0/1 and 0/255 masks alike); masks that predict.py writes use
  the first one listed. A class may also be the ignore index.
- ``mask_palette``: the colour of each class for RGB colour-coded masks, ``[[r, g, b], ...]``
  (class i = colour i) or ``{class: [r, g, b]}`` (which may also give the ignore index a
  colour).
- neither: the stored value is the class index (index or palette PNGs).

A stored value (or colour) that is not listed becomes ``ignore_index`` when the data has one,
and is otherwise an error naming the file and the value.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from litseg.errors import ConfigError, DataError

MEMBRANE_DATASET = "litseg.data.datasets.membrane.MembraneDataset"
# the ISBI 2012 label files: 0 = membrane, 255 = cell interior (see conf/data/membrane.yaml)
MEMBRANE_VALUES = {"membrane": {0: 1, 255: 0}, "interior": {0: 0, 255: 1}}


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 (or Nx3) colours -> one int64 code per pixel, ``r << 16 | g << 8 | b``."""
    rgb = np.asarray(rgb, dtype=np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack_rgb(code: int) -> tuple[int, int, int]:
    """The (r, g, b) colour of a packed code."""
    return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


def _as_int(value: Any, what: str) -> int:
    try:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError
        return int(float(value))
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected an integer") from None


def _colour(value: Any, key: str) -> tuple[int, int, int]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 3:
        raise ConfigError(f"{key}={value}: expected a colour [r, g, b]")
    rgb = tuple(_as_int(v, f"{key}={list(value)}") for v in value)
    if not all(0 <= v <= 255 for v in rgb):
        raise ConfigError(f"{key}={list(value)}: expected [r, g, b] with each in 0..255")
    return rgb  # type: ignore[return-value]


@dataclass(frozen=True)
class MaskEncoding:
    """A stored value (or packed colour) -> class table, applied to whole masks.

    Args:
        table: stored key -> class, in the order given (the first key of a class is the one
            written back by :meth:`encode`).
        colour: keys are packed RGB colours (colour masks) rather than pixel values.
        ignore_index: what unlisted keys become; None makes them an error.
        keep_unlisted: unlisted values stay as they are (the older ``value_map`` option).
        key: the config key that declared the table, for messages.
    """

    table: dict[int, int]
    colour: bool = False
    ignore_index: int | None = None
    keep_unlisted: bool = False
    key: str = "data.mask_values"
    _keys: np.ndarray = field(init=False, repr=False, compare=False)
    _classes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = np.array(sorted(self.table), dtype=np.int64)
        object.__setattr__(self, "_keys", keys)
        classes = np.array([self.table[int(k)] for k in keys], dtype=np.int64)
        object.__setattr__(self, "_classes", classes)

    def show(self, key: int) -> str:
        """A stored key as a user writes it: ``255`` or ``(r, g, b)``."""
        return str(unpack_rgb(key)) if self.colour else str(int(key))

    def describe(self) -> str:
        """The table as the config spells it."""
        if self.colour:
            return (
                "{" + ", ".join(f"{c}: {list(unpack_rgb(k))}" for k, c in self.table.items()) + "}"
            )
        return "{" + ", ".join(f"{k}: {c}" for k, c in self.table.items()) + "}"

    def codes(self, stored: np.ndarray) -> np.ndarray:
        """Stored masks as int64 keys (colour masks packed to one code per pixel)."""
        return pack_rgb(stored) if self.colour else np.asarray(stored, dtype=np.int64)

    def decode(self, stored: np.ndarray, path: Path | str) -> np.ndarray:
        """HxW stored values (HxWx3 for colour masks) -> HxW int64 class indices."""
        codes = self.codes(stored)
        if self._keys.size == 0:
            hit = np.zeros(codes.shape, dtype=bool)
            out = codes.copy()
        else:
            index = np.clip(np.searchsorted(self._keys, codes), 0, self._keys.size - 1)
            hit = self._keys[index] == codes
            out = self._classes[index]
        if hit.all():
            return out
        miss = ~hit
        if self.keep_unlisted:
            out[miss] = codes[miss]
        elif self.ignore_index is not None:
            out[miss] = self.ignore_index
        else:
            raise DataError(self._unlisted(codes, miss, path))
        return out

    def _unlisted(self, codes: np.ndarray, miss: np.ndarray, path: Path | str) -> str:
        bad = np.unique(codes[miss])
        y, x = np.argwhere(miss)[0]
        shown = ", ".join(self.show(v) for v in bad[:10])
        what = ("colour" if self.colour else "value") + ("s" if bad.size > 1 else "")
        return (
            f"{path} has {what} {shown} (first at x={x}, y={y}) not in {self.key}="
            f"{self.describe()} and data.ignore_index is null; add each to {self.key} "
            f"({'class -> [r, g, b]' if self.colour else 'stored value -> class'}) or set "
            "data.ignore_index to skip them"
        )

    def stored_of(self, cls: int) -> int | None:
        """The first stored key listed for class ``cls`` (None if there is none)."""
        return next((int(k) for k, c in self.table.items() if c == cls), None)

    def encode(self, classes: np.ndarray, fallback: Mapping[int, int] | None = None) -> np.ndarray:
        """Class indices -> the stored values (HxWx3 colours for colour masks) that the
        training masks used; a class without a stored key takes ``fallback[cls]`` or itself."""
        classes = np.asarray(classes, dtype=np.int64)
        top = int(classes.max(initial=0)) + 1
        lut = np.empty(top, dtype=np.int64)
        for cls in range(top):
            stored = self.stored_of(cls)
            lut[cls] = stored if stored is not None else (fallback or {}).get(cls, cls)
        out = lut[classes]
        if self.colour:
            return np.stack([out >> 16 & 255, out >> 8 & 255, out & 255], axis=-1).astype(np.uint8)
        return out


def mask_encoding(
    num_classes: int,
    ignore_index: int | None = None,
    mask_values: Mapping[Any, Any] | None = None,
    mask_palette: Sequence[Any] | Mapping[Any, Any] | None = None,
    complete: bool = True,
) -> MaskEncoding | None:
    """The encoding a data config declares (None: stored values are class indices).

    Checks it against the classes: every stored value must name a class in
    ``[0, max(num_classes, 2))`` or ``ignore_index``, and (``complete``) every class needs a
    stored value, else a ConfigError naming the key.
    """
    labels = max(int(num_classes), 2)
    if mask_values and mask_palette:
        raise ConfigError(
            "data.mask_values and data.mask_palette are both set; set mask_values for index "
            "masks or mask_palette for RGB colour masks, not both"
        )

    def target(cls: Any, what: str) -> int:
        cls = _as_int(cls, what)
        if not (0 <= cls < labels or cls == ignore_index):
            ignore = f" or data.ignore_index ({ignore_index})" if ignore_index is not None else ""
            raise ConfigError(f"{what}: expected a class in [0, {labels}){ignore}")
        return cls

    if mask_palette:
        key = "data.mask_palette"
        if isinstance(mask_palette, Mapping):
            pairs = [(target(c, f"{key} class {c}"), v) for c, v in mask_palette.items()]
        else:
            if len(mask_palette) != labels:
                raise ConfigError(
                    f"{key} has {len(mask_palette)} colours; expected one per class ({labels}), "
                    "or a mapping class -> [r, g, b]"
                )
            pairs = list(enumerate(mask_palette))
        table: dict[int, int] = {}
        for cls, colour in pairs:
            code = int(pack_rgb(np.array(_colour(colour, f"{key} class {cls}"))))
            if code in table:
                raise ConfigError(
                    f"{key}: classes {table[code]} and {cls} share the colour "
                    f"{list(unpack_rgb(code))}; expected one colour per class"
                )
            table[code] = cls
        encoding = MaskEncoding(table, colour=True, ignore_index=ignore_index, key=key)
    elif mask_values:
        key = "data.mask_values"
        if not isinstance(mask_values, Mapping):
            raise ConfigError(
                f"{key}={mask_values}: expected a mapping stored value -> class, "
                "e.g. {0: 0, 255: 1}"
            )
        table = {}
        for stored, cls in mask_values.items():
            value = _as_int(stored, f"{key} key {stored!r}")
            if value < 0:
                raise ConfigError(f"{key} key {value}: expected a stored pixel value >= 0")
            table[value] = target(cls, f"{key} maps {value} to {cls}")
        encoding = MaskEncoding(table, ignore_index=ignore_index, key=key)
    else:
        return None
    if complete:
        missing = [c for c in range(labels) if encoding.stored_of(c) is None]
        if missing:
            raise ConfigError(
                f"{encoding.key}={encoding.describe()} gives no stored "
                f"{'colour' if encoding.colour else 'value'} for class(es) {missing}; every class "
                f"in [0, {labels}) needs one, or it can never be learned"
            )
    return encoding


def stored_encoding(data: Mapping[str, Any]) -> MaskEncoding | None:
    """The mask encoding of a (stored, resolved) data config: what the training masks used.

    ``data.mask_values`` / ``data.mask_palette`` when present; the ISBI membrane dataset's own
    encoding (from ``data.target``) for configs written before those keys existed; else None
    (stored values are the class indices).
    """
    values, palette = data.get("mask_values"), data.get("mask_palette")
    dataset = data.get("dataset") or {}
    if not values and not palette and dataset.get("_target_") == MEMBRANE_DATASET:
        values = MEMBRANE_VALUES.get(str(data.get("target") or dataset.get("target")))
    if not values and not palette:
        return None
    return mask_encoding(
        int(data.get("num_classes") or 1),
        data.get("ignore_index"),
        values,
        palette,
        complete=False,
    )


def legacy_encoding(
    colors: Mapping[Any, Sequence[int]] | None, value_map: Mapping[Any, Any] | None
) -> MaskEncoding | None:
    """The older options: ``colors`` (class -> [r, g, b]; an unlisted colour is an error) and
    ``value_map`` (listed values renamed, the others kept as they are)."""
    if colors:
        table = {
            int(pack_rgb(np.array(_colour(rgb, f"data.colors class {c}")))): _as_int(
                c, "data.colors"
            )
            for c, rgb in colors.items()
        }
        return MaskEncoding(table, colour=True, key="data.colors")
    if value_map:
        table = {
            _as_int(k, "data.value_map key"): _as_int(v, "data.value_map")
            for k, v in value_map.items()
        }
        return MaskEncoding(table, keep_unlisted=True, key="data.value_map")
    return None
