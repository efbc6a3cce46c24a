"""Draw image | truth | prediction rows for a checkpoint: the README's picture.

    python scripts/render_predictions.py --ckpt logs/train/runs/<run>/checkpoints/last.ckpt \
        --out docs/images/shapes_predictions.png --n 6
"""

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

os.environ.setdefault("LITSEG_ROOT", str(Path(__file__).resolve().parents[1]))

from litseg.builders import build_datamodule, build_module  # noqa: E402
from litseg.checkpoint import load_checkpoint, training_config  # noqa: E402
from litseg.errors import ConfigError  # noqa: E402
from litseg.visualize import colorize, default_palette, grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=6, help="number of images")
    parser.add_argument("--split", default="val")
    parser.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling")
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.ckpt, "--ckpt")
    train_cfg = training_config(checkpoint)
    if train_cfg is None:
        raise ConfigError(f"--ckpt={args.ckpt} holds no litseg config")
    cfg = OmegaConf.create(train_cfg)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    dataset = datamodule.build(args.split)
    palette = np.asarray(cfg.data.get("palette") or default_palette(cfg.data.num_classes))
    rows = []
    for index in range(args.n):
        image, truth = dataset.raw(index)
        with torch.no_grad():
            logits = module(dataset[index]["image"][None])
        pred = (logits.argmax(1) if cfg.data.task == "multiclass" else logits[:, 0] > 0)[0]
        rows.append([image, colorize(truth, palette), colorize(pred.numpy(), palette)])
    picture = grid(rows)
    Image.fromarray(picture).resize(
        (picture.shape[1] * args.scale, picture.shape[0] * args.scale), Image.NEAREST
    ).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
