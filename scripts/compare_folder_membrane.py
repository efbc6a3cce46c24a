"""Does a binary folder dataset with 0/255 masks train like the built-in membrane loader?

Lays the ISBI 2012 membrane slices out as a plain folder dataset under ``--workdir`` (never in
the repository): ``train/{images,masks}`` with slices 0-23 and ``val/{images,masks}`` with
slices 24-29 (the membrane loader's default validation block, ``data.fold=4`` of 5), file
names zero-padded so both loaders read the slices in the same order, and masks stored as
0/255 with membrane = 255 (the label files store membrane as 0). Then trains the same recipe
twice with the same seed:

    python train.py experiment=membrane_cpu <schedule>                      # data=membrane
    python train.py experiment=membrane_cpu <schedule> data=folder \\
        data.root=<workdir>/membrane_folder data.task=binary                # the folder copy

and a third time on the folder copy read as one channel with the membrane normalisation
(``data.in_channels=1 data.mean=[0.4948] data.std=[0.1726]``: the folder default is RGB
with ImageNet statistics, so only this run has the membrane run's exact network), and prints
the best validation Dice scores (``summary.json``'s ``best_score``) as one JSON line.
Usage (about 8 minutes on two cores):

    OMP_NUM_THREADS=1 nice -n 5 python scripts/compare_folder_membrane.py \\
        --data /path/to/isbi2012_membrane --workdir /tmp/folder_vs_membrane
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = ["trainer.max_epochs=30", "trainer.check_val_every_n_epoch=10", "seed=42"]
VAL_SLICES = range(24, 30)
# conf/data/membrane.yaml's channels and normalisation (the folder default is RGB, ImageNet)
GRAY = ["data.in_channels=1", "data.mean=[0.4948]", "data.std=[0.1726]"]


def lay_out(source: Path, target: Path) -> Path:
    """Write the membrane slices as ``target/{train,val}/{images,masks}`` (0/255 masks,
    membrane = 255); returns ``target``."""
    images = sorted((source / "image").glob("*.png"), key=lambda p: int(p.stem))
    if len(images) != 30:
        raise SystemExit(f"{source}/image holds {len(images)} slices; expected the 30 of ISBI 2012")
    for path in images:
        split = "val" if int(path.stem) in VAL_SLICES else "train"
        name = f"{int(path.stem):02d}.png"
        (target / split / "images").mkdir(parents=True, exist_ok=True)
        (target / split / "masks").mkdir(parents=True, exist_ok=True)
        Image.open(path).save(target / split / "images" / name)
        label = np.asarray(Image.open(source / "label" / path.name))
        mask = np.where(label == 0, 255, 0).astype(np.uint8)  # membrane (stored 0) -> 255
        Image.fromarray(mask).save(target / split / "masks" / name)
    return target


def train(name: str, overrides: list[str], workdir: Path) -> dict:
    """Run train.py with ``overrides`` into ``workdir/<name>``; its summary and wall time."""
    run_dir = workdir / name
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "experiment=membrane_cpu",
        *SCHEDULE,
        *overrides,
        f"hydra.run.dir={run_dir}",
        f"paths.log_dir={workdir / 'logs'}",
        "logger=csv",
    ]
    started = time.time()
    subprocess.run(command, cwd=ROOT, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "command": " ".join(["python train.py", *command[2:]]),
        "best_val_dice": summary["best_score"],
        "last_val_dice": summary["metrics"].get("val/dice"),
        "val_pixel_acc": summary["metrics"].get("val/pixel_acc"),
        "wall_s": round(time.time() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("LITSEG_DATA_DIR", ROOT / "data")) / "isbi2012_membrane"
    parser.add_argument("--data", type=Path, default=default_data, help="the ISBI 2012 folder")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/folder_vs_membrane"))
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    if workdir == ROOT or ROOT in workdir.parents:
        raise SystemExit(f"--workdir={workdir} lies in the repository; choose a folder outside")
    if workdir.exists():
        raise SystemExit(f"--workdir={workdir} exists; choose a new folder")
    folder = lay_out(args.data, workdir / "membrane_folder")
    results = {
        "membrane": train("membrane", [f"data.root={args.data}"], workdir),
        "folder": train(
            "folder", ["data=folder", f"data.root={folder}", "data.task=binary"], workdir
        ),
        # the same folder read as the membrane loader reads it: one channel and the membrane
        # normalisation, so the network's input and first layer are the membrane run's
        "folder_gray": train(
            "folder_gray",
            ["data=folder", f"data.root={folder}", "data.task=binary", *GRAY],
            workdir,
        ),
    }
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
