"""Draw image | truth | prediction rows for a checkpoint: the README's pictures.

    python scripts/render_predictions.py --ckpt logs/train/runs/<run>/checkpoints/last.ckpt \
        --out docs/images/shapes_predictions.png --n 6

Each image is predicted whole at its own size (padded to the model's stride, as eval.py's
``inference=whole`` does), so frames such as CamVid's 480x360 work; ``--indices 3 40 77``
picks the images, ``--tta flip|hflip|vflip|d4`` averages flipped copies, ``--max-width``
shrinks the picture and an ``--out`` ending in .jpg writes a JPEG. Ignored pixels of the truth
are white.
"""

import argparse
import os
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

os.environ.setdefault("LITSEG_ROOT", str(Path(__file__).resolve().parents[1]))

from litseg.builders import build_datamodule, build_module  # noqa: E402
from litseg.checkpoint import load_checkpoint, training_config  # noqa: E402
from litseg.errors import ConfigError  # noqa: E402
from litseg.inference import TTAS, infer, model_stride  # noqa: E402
from litseg.visualize import colorize, default_palette, grid  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=6, help="number of images")
    parser.add_argument("--split", default="val")
    parser.add_argument("--indices", type=int, nargs="+", help="which images (default: first n)")
    parser.add_argument("--tta", default=None, choices=[t for t in TTAS if t])
    parser.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling")
    parser.add_argument("--max-width", type=int, default=None, help="downscale to this width")
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
    ignore = cfg.data.get("ignore_index")
    stride = model_stride(module.net)
    rows = []
    for index in args.indices or range(args.n):
        image, truth = dataset.raw(index)
        logits = infer(module, dataset[index]["image"][None], stride=stride, tta=args.tta)
        pred = (logits.argmax(1) if cfg.data.task == "multiclass" else logits[:, 0] > 0)[0]
        rows.append(
            [image, colorize(truth, palette, ignore), colorize(pred.numpy().astype(int), palette)]
        )
    picture = Image.fromarray(grid(rows))
    picture = picture.resize(
        (picture.width * args.scale, picture.height * args.scale), Image.NEAREST
    )
    if args.max_width and picture.width > args.max_width:
        height = round(picture.height * args.max_width / picture.width)
        picture = picture.resize((args.max_width, height), Image.LANCZOS)
    picture.save(args.out, quality=85)  # quality: JPEG only (.jpg keeps EM noise small)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
