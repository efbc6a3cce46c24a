"""Loader images/s against the model's training images/s, for one composed config.

    python scripts/benchmark_loader.py data=camvid augment=basic --batches 20
    python scripts/benchmark_loader.py experiment=membrane_unet data.num_workers=0

The loader is timed as training uses it (the configured workers, augmentation and
collation; the first batch, which pays for starting workers, is left out). The model is
timed on one batch repeated: forward, loss, backward and an optimizer step. When the
loader is slower than the model, the data pipeline starves training.
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITSEG_ROOT", str(ROOT))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

import litseg  # noqa: E402,F401  (registers the config resolvers)
from litseg.errors import LitsegError  # noqa: E402
from litseg.utils.instantiate import build_datamodule, build_module  # noqa: E402


def loader_rate(loader, batches: int) -> tuple[float, int]:
    """Images per second over ``batches`` batches after the first."""
    iterator = iter(loader)
    next(iterator)
    images, started = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        images += batch["image"].shape[0]
    return images / (time.perf_counter() - started), images


def model_rate(module, batch: dict, steps: int) -> float:
    """Training images per second: forward, loss, backward, optimizer step on one batch."""
    optimizer = instantiate_optimizer(module)
    module.train()
    for step in range(steps + 1):
        if step == 1:  # the first step warms up allocations and is left out
            started = time.perf_counter()
        optimizer.zero_grad()
        loss = module.loss_fn(module(batch["image"]), batch["mask"])
        loss.backward()
        optimizer.step()
    return steps * batch["image"].shape[0] / (time.perf_counter() - started)


def instantiate_optimizer(module):
    """The module's own optimizer (configure_optimizers may return a dict or a list)."""
    opt = module.configure_optimizers()
    if isinstance(opt, dict):
        opt = opt["optimizer"]
    if isinstance(opt, list | tuple):
        opt = opt[0]
    return opt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="loader batches to time")
    parser.add_argument("--steps", type=int, default=5, help="training steps to time")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of conf/train.yaml")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=args.overrides)
    try:
        datamodule = build_datamodule(cfg)
        datamodule.setup("fit")
        module = build_module(cfg)
    except LitsegError as err:
        print(f"benchmark_loader: error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rate, images = loader_rate(datamodule.train_dataloader(), args.batches)
    batch = next(iter(datamodule.train_dataloader()))
    train_rate = model_rate(module, batch, args.steps)
    print(f"config: {' '.join(args.overrides) or '(defaults)'}")
    print(
        f"batch: {tuple(batch['image'].shape)}, workers: {datamodule.num_workers}, "
        f"threads: {torch.get_num_threads()}"
    )
    print(f"loader: {rate:.1f} images/s over {images} images")
    print(f"model training: {train_rate:.1f} images/s over {args.steps} steps")
    verdict = "keeps up with" if rate >= train_rate else "is slower than (starves)"
    print(f"the loader {verdict} training ({rate / train_rate:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
