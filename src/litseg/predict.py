"""Prediction behind ``python predict.py ckpt_path=... input=... output=...``.

Everything needed comes from the checkpoint: litseg stores the resolved training config in
it, so the model is rebuilt from ``model``, images go through the training run's own
evaluation pipeline (``augment.eval``: same normalisation, channels and bit depth) and the
masks use ``data.palette`` and ``data.class_names``.
"""

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn
from tqdm import tqdm

from litseg.checkpoint import load_checkpoint, training_config
from litseg.data.files import IMAGE_SUFFIXES
from litseg.data.files import read_image as read_file_image
from litseg.errors import ConfigError
from litseg.inference import infer, model_stride
from litseg.metrics import predictions
from litseg.utils.instantiate import require
from litseg.visualize import mask_to_pil, overlay, palette_for, to_display_image

log = logging.getLogger(__name__)


@dataclass
class Predictor:
    """A trained network with what it needs to turn image files into masks."""

    net: nn.Module
    transform: Any
    task: str
    num_classes: int
    class_names: list[str]
    palette: np.ndarray
    in_channels: int
    threshold: float
    stride: int
    config: DictConfig

    @torch.no_grad()
    def logits(self, images: torch.Tensor, **inference: Any) -> torch.Tensor:
        """Logits for normalised images of one size (see :func:`litseg.inference.infer`)."""
        options = {"stride": self.stride, **{k: v for k, v in inference.items() if v is not None}}
        device = next(self.net.parameters()).device
        return infer(self.net, images.to(device), **options).float().cpu()

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """The CHW tensor the network saw in training for a raw HxW(xC) image."""
        mask = np.zeros(image.shape[:2], dtype=np.uint8)
        return self.transform(image=image, mask=mask)["image"]

    def masks(self, logits: torch.Tensor, threshold: float | None = None) -> np.ndarray:
        """Hard predictions: (N, H, W) class indices or 0/1, (N, C, H, W) 0/1 for multilabel."""
        t = self.threshold if threshold is None else threshold
        return predictions(logits, self.task, t).to(torch.uint8).numpy()


def net_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network's weights out of a SegmentationModule state dict (keys under ``net.``)."""
    return {k[4:]: v for k, v in state_dict.items() if k.startswith("net.")}


def load_predictor(ckpt_path: str | Path, device: str = "cpu") -> Predictor:
    """Rebuild the network, eval pipeline, classes and palette from a litseg checkpoint."""
    checkpoint = load_checkpoint(ckpt_path)
    stored = training_config(checkpoint)
    if stored is None:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: holds no litseg config (litseg_config); "
            "prediction needs a checkpoint written by litseg's train.py"
        )
    cfg = OmegaConf.create(stored)
    data = cfg.data
    net: nn.Module = instantiate(cfg.model)
    net.load_state_dict(net_state(checkpoint["state_dict"]))
    net.eval().to(device)
    transform = instantiate(cfg.augment.eval) if cfg.get("augment", {}).get("eval") else None
    if transform is None:
        raise ConfigError(f"ckpt_path={ckpt_path}: its config has no augment.eval pipeline")
    names = list(data.get("class_names") or [str(i) for i in range(data.num_classes)])
    task = data.task
    return Predictor(
        net=net,
        transform=transform,
        task=task,
        num_classes=int(data.num_classes),
        class_names=names,
        palette=palette_for(max(int(data.num_classes), 2), data.get("palette")),
        in_channels=int(data.get("in_channels", 3)),
        threshold=float(OmegaConf.select(cfg, "module.threshold", default=None) or 0.5),
        stride=model_stride(net),
        config=cfg,
    )


def read_image(path: Path, in_channels: int) -> np.ndarray:
    """An image file read as the file datasets read theirs (litseg.data.files.read_image):
    uint8 HxWxC with the model's channel count, 16-bit scaled to 8 bits, alpha dropped."""
    return read_file_image(Path(path), in_channels)


def find_images(source: str | Path) -> tuple[Path, list[Path]]:
    """(root, image files): one file, or every image under a folder (sorted, recursive)."""
    source = Path(source)
    if source.is_file():
        return source.parent, [source]
    if not source.is_dir():
        raise ConfigError(f"input={source}: no such file or folder")
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"input={source}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return source, files


def _batches(
    files: Sequence[Path], predictor: Predictor, batch_size: int
) -> Iterator[list[tuple[Path, np.ndarray, torch.Tensor]]]:
    """Consecutive files of one size in groups of at most ``batch_size``."""
    batch: list[tuple[Path, np.ndarray, torch.Tensor]] = []
    for path in files:
        image = read_image(path, predictor.in_channels)
        tensor = predictor.prepare(image)
        if batch and (len(batch) == batch_size or batch[0][2].shape != tensor.shape):
            yield batch
            batch = []
        batch.append((path, image, tensor))
    if batch:
        yield batch


def write_mask(mask: np.ndarray, path: Path, predictor: Predictor) -> list[Path]:
    """Palette PNG (multiclass), 0/255 PNG (binary) or one 0/255 PNG per label (multilabel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if predictor.task == "multiclass":
        mask_to_pil(mask, predictor.palette).save(path)
        return [path]
    if predictor.task == "binary":
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)
        return [path]
    written = []
    for name, channel in zip(predictor.class_names, mask, strict=True):
        out = path.with_name(f"{path.stem}_{name}.png")
        Image.fromarray(channel.astype(np.uint8) * 255).save(out)
        written.append(out)
    return written


def overlay_of(image: np.ndarray, mask: np.ndarray, predictor: Predictor, alpha: float):
    """The coloured overlay of a prediction on its image (multilabel: first active label)."""
    if predictor.task == "multilabel":
        active = mask.any(axis=0)
        mask = np.where(active, mask.argmax(axis=0) + 1, 0)
        palette = np.concatenate([[[0, 0, 0]], predictor.palette])
    else:
        palette = predictor.palette if predictor.task == "multiclass" else [[0, 0, 0], [255, 0, 0]]
    return overlay(to_display_image(image), mask, palette, alpha)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Write a mask (and an overlay) for every image under ``input`` into ``output``."""
    ckpt_path = require(cfg, "ckpt_path")
    root, files = find_images(require(cfg, "input"))
    output = Path(require(cfg, "output"))
    device = cfg.get("device") or "auto"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    predictor = load_predictor(ckpt_path, device)
    inference = dict(cfg.get("inference") or {})
    if inference.get("stride") is None:
        inference.pop("stride", None)
    if inference.get("mode") == "slide" and not inference.get("window"):
        # the training crop is the natural window; without one the user must name it
        inference["window"] = predictor.config.data.get("crop_size")
    batch_size = int(cfg.get("batch_size", 4))
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; expected an integer >= 1")
    threshold = cfg.get("threshold")
    alpha = cfg.get("overlay_alpha", 0.5)
    written: list[Path] = []
    with tqdm(
        total=len(files), desc="predict", unit="img", disable=not cfg.get("progress", True)
    ) as bar:
        for batch in _batches(files, predictor, batch_size):
            logits = predictor.logits(torch.stack([t for _, _, t in batch]), **inference)
            for (path, image, _), item in zip(batch, logits, strict=True):
                if item.shape[-2:] != image.shape[:2]:  # the eval pipeline resized the image
                    item = F.interpolate(item[None], image.shape[:2], mode="bilinear")[0]
                mask = predictor.masks(item[None], threshold)[0]
                target = output / path.relative_to(root).with_suffix(".png")
                written += write_mask(mask, target, predictor)
                if cfg.get("overlay", True):
                    picture = overlay_of(image, mask, predictor, alpha)
                    overlay_path = output / "overlays" / target.relative_to(output)
                    overlay_path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(picture).save(overlay_path)
            bar.update(len(batch))
    log.info("Wrote %d masks for %d images to %s", len(written), len(files), output)
    return {"output": str(output), "images": len(files), "masks": [str(p) for p in written]}
