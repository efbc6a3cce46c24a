"""Convert COCO or LabelMe annotations into PNG masks laid out for ``data=folder``, once.

    python scripts/convert_annotations.py --out /path/to/masks data=coco data.root=/path/to/export
    python scripts/convert_annotations.py --out /path/to/masks data=labelme \\
        data.root=/path/to/labelme "data.labels=[background,cat,dog]"

Takes the overrides of ``python train.py`` (data=coco or data=labelme with their options:
data.categories, data.val_json, data.val_fraction, ...), so the masks are exactly the ones
those datasets train on: every annotation is checked first, and a bad one stops the
conversion with the JSON file and its id. Writes, for each split (train, val, and test when
configured):

    OUT/<split>/images/<name>.<ext>   the image file, copied as it is
    OUT/<split>/masks/<name>.png      class indices (0 background), data.ignore_index (255)
                                      where the annotations mark crowd or ignored regions

and prints the ``python train.py data=folder ...`` command that trains on them. ``<name>``
is the image's path below its image folder with "/" replaced by "__" (unique per split).
OUT must not exist yet, or be empty. Exits 0 on success, 2 on a config or data error.
"""

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITSEG_ROOT", str(ROOT))

import numpy as np  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402
from PIL import Image  # noqa: E402

from litseg.builders import build_datamodule  # noqa: E402
from litseg.config import compose  # noqa: E402
from litseg.errors import ConfigError, DataError, LitsegError  # noqa: E402
from litseg.runtime.entry import user_error  # noqa: E402


def output_name(image: Path, base: Path) -> str:
    """The file stem an image gets in the output: its path below ``base`` with "/" as "__"."""
    try:
        relative = image.relative_to(base)
    except ValueError:
        relative = Path(image.name)
    return "__".join(relative.with_suffix("").parts)


def image_folder(item: object) -> tuple[Path, Path]:
    """(image path, the folder its name is relative to) of a COCO or LabelMe item."""
    if hasattr(item, "json_path") and hasattr(item, "image_path"):  # LabelMe: beside its JSON
        return item.image_path, item.json_path.parent
    return item.path, item.path.parent


def write_mask(path: Path, mask: np.ndarray) -> None:
    """An index PNG: 8-bit when every value fits, else 16-bit."""
    if mask.max(initial=0) < 256:
        Image.fromarray(mask.astype(np.uint8), mode="L").save(path)
    else:
        Image.fromarray(mask.astype(np.uint16)).save(path)


def convert(datamodule: object, out: Path) -> dict[str, int]:
    """Write every split of ``datamodule`` under ``out``; returns images written per split."""
    written = {}
    for split in datamodule.split_args:
        dataset = datamodule.make_dataset(split, transform=None)
        if not hasattr(dataset, "items") or not hasattr(dataset, "mask"):
            raise ConfigError(
                "convert_annotations.py converts data=coco or data=labelme; this data config "
                "already reads masks from files"
            )
        images, masks = out / split / "images", out / split / "masks"
        images.mkdir(parents=True)
        masks.mkdir(parents=True)
        base = getattr(dataset, "image_dir", None)
        seen: dict[str, Path] = {}
        for index, item in enumerate(dataset.items):
            source, folder = image_folder(item)
            name = output_name(source, Path(base) if base else folder)
            if name in seen:
                raise DataError(
                    f"{source} and {seen[name]} would both be written as {name}; rename one of them"
                )
            seen[name] = source
            _, mask = dataset.raw(index)  # checks the image against the annotation sizes
            shutil.copyfile(source, images / f"{name}{source.suffix.lower()}")
            write_mask(masks / f"{name}.png", mask)
        written[split] = len(dataset.items)
    return written


def train_command(out: Path, datamodule: object) -> str:
    """The data=folder command line that trains on the converted masks."""
    names = list(datamodule.class_names or [])
    args = ["python", "train.py", "data=folder", f"data.root={out}"]
    if datamodule.task == "binary":
        args += ["data.task=binary", "data.mask_values={0: 0, 1: 1}"]
    else:
        args.append(f"data.num_classes={datamodule.num_classes}")
    if names:
        args.append("data.class_names=[" + ",".join(json.dumps(n) for n in names) + "]")
    args.append(f"data.ignore_index={datamodule.ignore_index}")
    return " ".join(shlex.quote(a) for a in args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="the folder to write")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"--out {out} exists and is not an empty folder; choose a new one")
        cfg = compose(args.overrides, conf_dir=ROOT / "conf")
        datamodule = build_datamodule(cfg)
        # written beside OUT and renamed at the end: a failed conversion leaves no half folder
        partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
        try:
            written = convert(datamodule, partial)
            if out.exists():
                out.rmdir()
            partial.rename(out)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    except (LitsegError, HydraException, OmegaConfBaseException) as err:
        print(f"convert_annotations: error: {user_error(err) or err}", file=sys.stderr)
        return 2
    for split, count in written.items():
        print(f"{split}: {count} images and masks in {out / split}")
    print("train on them with:")
    print(f"  {train_command(out, datamodule)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
