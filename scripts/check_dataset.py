"""Check a dataset before training on it: every file decoded, every problem listed.

    python scripts/check_dataset.py data=camvid data.root=../shared/datasets/camvid
    python scripts/check_dataset.py data=folder data.root=/path/to/data data.num_classes=3

Takes the overrides of ``python train.py`` (conf/train.yaml is composed with them). Reports
per split: pairs found, unreadable files, image/mask size mismatches, label values outside
[0, num_classes) other than ignore_index, images without masks, the mask values stored in
the files (value -> pixel share, in how many images, and the class each is read as, see
data.mask_values), class pixel frequencies and image mean/std; then median-frequency class
weights from the train split. Refuses, with one line naming the stored value and the
data.mask_values that would read it, a dataset where more than half of a split's pixels are
ignored or a class never appears in the train split. Exits 1 when anything is wrong or
refused, 2 when the config itself is unusable, 0 otherwise.
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITSEG_ROOT", str(ROOT))

from hydra.errors import HydraException  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from litseg.builders import build_datamodule  # noqa: E402
from litseg.config import compose  # noqa: E402
from litseg.data.checks import Report, refusal, scan, show_value  # noqa: E402
from litseg.errors import ConfigError, DataError, LitsegError  # noqa: E402


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def _value_lines(
    report: Report, dataset: object, images: int, ignore_index: int | None, names: list[str]
) -> list[str]:
    """One line per stored mask value: its pixel share, in how many images, what it is read as."""
    lines = []
    total = max(report.mask_pixels, 1)
    for key in sorted(report.values):
        pixels, count = report.values[key]
        classes = sorted(report.value_classes.get(key, ()))
        read_as = []
        for cls in classes:
            if cls == ignore_index:
                read_as.append(f"ignored (data.ignore_index={ignore_index})")
            else:
                read_as.append(f"class {cls}" + (f" ({names[cls]})" if cls < len(names) else ""))
        what = ", ".join(read_as) if read_as else "not readable as a class (see ERROR)"
        lines.append(
            f"    {show_value(dataset, key)}: {100 * pixels / total:.2f} % of pixels, "
            f"in {count} of {images} images -> {what}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="check at most N pairs a split")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml")
    args = parser.parse_args(argv)
    try:
        cfg = compose(args.overrides, conf_dir=ROOT / "conf")
        with open_dict(cfg):
            cfg.data.check = "none"  # scan() below collects every problem instead
        datamodule = build_datamodule(cfg)
    except (LitsegError, HydraException, OmegaConfBaseException) as err:
        print(f"check_dataset: error: {err}", file=sys.stderr)
        return 2

    names = list(datamodule.class_names or [])
    if datamodule.task == "binary":  # one output channel, two label values
        names = ["background", *(names or ["foreground"])]
    failed = False
    weights: list[float] | None = None
    reports: list[Report] = []
    dataset = None
    print(f"data: {cfg.data.get('root') or cfg.data.dataset._target_}")
    print(
        f"task: {datamodule.task}, num_classes: {datamodule.num_classes}, "
        f"ignore_index: {datamodule.ignore_index}"
    )
    for split in datamodule.split_args:
        print(f"\n[{split}]")
        try:
            dataset = datamodule.make_dataset(split, transform=None)
        except ConfigError as err:  # e.g. a data.mask_values that does not fit the classes
            print(f"check_dataset: error: {err}", file=sys.stderr)
            return 2
        except DataError as err:
            print(f"  ERROR {err}")
            failed = True
            continue
        if args.limit is not None and hasattr(dataset, "pairs"):
            dataset.pairs = dataset.pairs[: args.limit]
        report, split_weights = scan(
            dataset, split, datamodule.num_classes, datamodule.ignore_index
        )
        reports.append(report)
        print(f"  pairs found: {len(dataset)}, read: {report.pairs}")
        for error in report.errors:
            print(f"  ERROR {error}")
        failed |= bool(report.errors)
        if report.values:
            print("  mask values (stored value: pixel share, images -> read as):")
            print(
                "\n".join(
                    _value_lines(report, dataset, len(dataset), datamodule.ignore_index, names)
                )
            )
        if report.pairs:
            freqs = report.frequencies
            labels = [names[i] if i < len(names) else str(i) for i in range(len(freqs))]
            print(
                "  class pixel share: "
                + ", ".join(f"{name}={freq:.4f}" for name, freq in zip(labels, freqs, strict=True))
            )
            print(f"  ignored pixels: {report.ignored_pixels} ({100 * report.ignored_share:.1f} %)")
            print(f"  mean: {_fmt(report.mean)}  std: {_fmt(report.std)}")
        if split == "train":
            weights = split_weights
    refused = refusal(dataset, reports, datamodule.ignore_index, names) if reports else None
    if weights is not None and not refused:
        print(f"\nsuggested class weights (median frequency, train): {_fmt(weights)}")
        print("  e.g. loss=ce loss.class_weights=... or loss.terms.ce.class_weights=...")
    if refused:
        print(f"\nREFUSED: {refused}")
        print(f"check_dataset: refused: {refused}", file=sys.stderr)
        return 1
    print("\nFAILED: see the ERROR lines above" if failed else "\nOK: no problems found")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
