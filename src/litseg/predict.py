"""Prediction behind ``python predict.py ckpt_path=... input=... output=...``.

Everything needed comes from the checkpoint: litseg stores the resolved training config in
it, so the model is rebuilt from ``model``, images go through the training run's own
evaluation pipeline (``augment.eval``: same normalisation, channels and bit depth) and the
masks use ``data.palette`` and ``data.class_names``.

Outputs are planned and checked before the first write (no output path may be an input file
or another input's output; see conf/predict.yaml), written atomically, and batch by batch so
an unreadable image never costs the masks already predicted.
"""

import io
import logging
from collections import defaultdict
from collections.abc import Sequence
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

from litseg.builders import require
from litseg.checkpoint import load_checkpoint, training_config
from litseg.config_checks import check_run_config
from litseg.data.encoding import MaskEncoding, stored_encoding
from litseg.data.files import IMAGE_SUFFIXES
from litseg.data.files import read_image as read_file_image
from litseg.errors import ConfigError, LitsegError
from litseg.inference import infer, model_stride
from litseg.metrics import predictions
from litseg.utils.io import atomic_write_bytes
from litseg.visualize import mask_to_pil, overlay, palette_for, to_display_image

log = logging.getLogger(__name__)
ON_ERROR = ("stop", "skip")


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


def load_predictor(
    ckpt_path: str | Path, device: str = "cpu", allow_targets: Sequence[str] = ()
) -> Predictor:
    """Rebuild the network, eval pipeline, classes and palette from a litseg checkpoint."""
    checkpoint = load_checkpoint(ckpt_path, allow_targets=allow_targets)
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


def find_images(source: str | Path, exclude: str | Path | None = None) -> tuple[Path, list[Path]]:
    """(root, image files): one file, or every image under a folder (sorted, recursive).

    Files that really lie under ``exclude`` (symlinks resolved) are left out: predict passes
    its output folder, so masks written inside the input are never scanned as inputs.
    """
    source = Path(source)
    if source.is_file():
        return source.parent, [source]
    if not source.is_dir():
        raise ConfigError(f"input={source}: no such file or folder")
    skip = Path(exclude).resolve() if exclude is not None else None
    files = sorted(
        p
        for p in source.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not (skip is not None and p.resolve().is_relative_to(skip))
    )
    if not files:
        raise ConfigError(f"input={source}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return source, files


def mask_names(files: Sequence[Path], root: Path) -> dict[Path, Path]:
    """Each input's mask path relative to the output: its own relative path as ``.png``.

    Inputs of one folder that share a stem (``scan.png``, ``scan.jpg``, ``scan.tif``; compared
    case-insensitively) would share that name, so each of them keeps its whole file name
    instead: ``scan.png.png``, ``scan.jpg.png``, ``scan.tif.png``.
    """
    groups: dict[tuple[Path, str], list[Path]] = defaultdict(list)
    for path in files:
        rel = path.relative_to(root)
        groups[(rel.parent, rel.stem.casefold())].append(rel)
    names: dict[Path, Path] = {}
    for members in groups.values():
        for rel in members:
            name = rel.with_name(rel.name + ".png") if len(members) > 1 else rel.with_suffix(".png")
            names[root / rel] = name
    return names


def mask_paths(path: Path, predictor: Predictor) -> list[Path]:
    """The files :func:`write_mask` writes for ``path``: itself, or one per label."""
    if predictor.task == "multilabel":
        return [path.with_name(f"{path.stem}_{name}.png") for name in predictor.class_names]
    return [path]


@dataclass(frozen=True)
class Target:
    """Where the outputs of one input image go."""

    source: Path
    mask: Path
    overlay: Path | None


def plan_outputs(
    files: Sequence[Path], root: Path, output: Path, predictor: Predictor, overlays: bool
) -> list[Target]:
    """Every input's output paths, checked before anything is written.

    Refuses (ConfigError) an output path that is an input file, and two inputs whose outputs
    would land on the same path.
    """
    targets = [
        Target(path, output / rel, output / "overlays" / rel if overlays else None)
        for path, rel in mask_names(files, root).items()
    ]
    inputs: dict[tuple[int, int], Path] = {}
    for path in files:
        stat = path.stat()
        inputs[(stat.st_dev, stat.st_ino)] = path
    owner: dict[Path, Path] = {}
    for target in targets:
        outs = mask_paths(target.mask, predictor)
        outs += [target.overlay] if target.overlay is not None else []
        for out in outs:
            if out in owner:
                raise ConfigError(
                    f"output={output}: the outputs of {owner[out]} and {target.source} would "
                    f"both be {out}; rename one of them (or set overlay=false if one is an overlay)"
                )
            owner[out] = target.source
            try:
                stat = out.stat()
            except OSError:  # not there yet (or not reachable): cannot be an input
                continue
            same = inputs.get((stat.st_dev, stat.st_ino))
            if same is not None:
                raise ConfigError(
                    f"output={output}: writing the output of {target.source} would overwrite "
                    f"the input file {same}; choose an output folder that holds no input images"
                )
    return targets


def save_png(picture: Image.Image, path: Path) -> None:
    """Write ``picture`` as a PNG atomically: a hidden temporary file beside ``path``, renamed
    into place, so a killed or failed write never leaves a truncated PNG under ``path``."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getbuffer())


def encoded_mask(mask: np.ndarray, encoding: MaskEncoding, predictor: Predictor) -> Image.Image:
    """A class mask as the training masks stored it (``data.mask_values`` inverted: each class
    as the first stored value listed for it; ``data.mask_palette``: RGB colours).

    Multiclass values up to 255 become a palette PNG whose index is the stored value and whose
    colour is the class colour; binary ones a grayscale PNG; larger values a 16-bit PNG.
    """
    # a binary class without a stored value keeps today's 0/255
    stored = encoding.encode(mask, fallback={1: 255} if predictor.task == "binary" else None)
    if encoding.colour:
        return Image.fromarray(stored)
    if stored.max(initial=0) > 255:
        return Image.fromarray(stored.astype(np.uint16))
    if predictor.task != "multiclass":
        return Image.fromarray(stored.astype(np.uint8))
    palette = np.zeros((256, 3), dtype=np.uint8)
    for cls, colour in enumerate(predictor.palette):
        value = encoding.stored_of(cls)
        if value is not None and value < 256:
            palette[value] = colour
    return mask_to_pil(stored, palette)


def write_mask(mask: np.ndarray, path: Path, predictor: Predictor) -> list[Path]:
    """The mask in the encoding of the training masks when the checkpoint's data config
    declares one (``data.mask_values`` / ``data.mask_palette``, the membrane dataset's own
    0 = membrane); otherwise a palette PNG of class indices (multiclass), 0/255 PNG (binary) or
    one 0/255 PNG per label (multilabel)."""
    data = predictor.config.get("data") if predictor.config is not None else None
    encoding = stored_encoding(data) if data and predictor.task != "multilabel" else None
    if encoding is not None:
        save_png(encoded_mask(mask, encoding, predictor), path)
        return [path]
    if predictor.task == "multiclass":
        save_png(mask_to_pil(mask, predictor.palette), path)
        return [path]
    if predictor.task == "binary":
        save_png(Image.fromarray(mask.astype(np.uint8) * 255), path)
        return [path]
    written = []
    for out, channel in zip(mask_paths(path, predictor), mask, strict=True):
        save_png(Image.fromarray(channel.astype(np.uint8) * 255), out)
        written.append(out)
    return written


def overlay_of(
    image: np.ndarray, mask: np.ndarray, predictor: Predictor, alpha: float
) -> np.ndarray:
    """The coloured overlay of a prediction on its image (multilabel: first active label)."""
    if predictor.task == "multilabel":
        active = mask.any(axis=0)
        mask = np.where(active, mask.argmax(axis=0) + 1, 0)
        palette = np.concatenate([[[0, 0, 0]], predictor.palette])
    else:
        palette = predictor.palette if predictor.task == "multiclass" else [[0, 0, 0], [255, 0, 0]]
    return overlay(to_display_image(image), mask, palette, alpha)


def check_output(output: Path, root: Path, source: Path) -> Path | None:
    """Refuse an output that is the input folder or a file; the folder to leave out of the
    scan when the output lies inside the input (None otherwise)."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output={output} is a file; expected a folder for the masks")
    out, top = output.resolve(), root.resolve()
    if out == top:
        raise ConfigError(
            f"output={output} is the folder of input={source}: the masks would sit beside the "
            "images and replace those of the same name; choose another folder "
            f"(a subfolder such as {root / 'masks'} is fine: predict does not scan it)"
        )
    if source.is_dir() and out.is_relative_to(top):
        log.info(
            "output=%s lies inside input=%s: predict does not scan it for images", output, source
        )
        return output
    return None


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Write a mask (and an overlay) for every image under ``input`` into ``output``.

    No input is ever overwritten: the outputs are planned and checked before the first
    write, and every file is written atomically. Masks are written batch by batch, so an
    unreadable image (``on_error=stop``) keeps the masks predicted before it.
    """
    check_run_config(cfg)
    ckpt_path = require(cfg, "ckpt_path")
    source = Path(require(cfg, "input"))
    output = Path(require(cfg, "output"))
    on_error = cfg.get("on_error", "stop")
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error={on_error}; expected one of {', '.join(ON_ERROR)}")
    batch_size = int(cfg.get("batch_size", 4))
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; expected an integer >= 1")
    if not source.exists():
        raise ConfigError(f"input={source}: no such file or folder")
    root = source.parent if source.is_file() else source
    exclude = check_output(output, root, source)
    root, files = find_images(source, exclude=exclude)
    device = cfg.get("device") or "auto"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    predictor = load_predictor(ckpt_path, device, list(cfg.get("allow_targets") or []))
    targets = plan_outputs(files, root, output, predictor, bool(cfg.get("overlay", True)))
    inference = dict(cfg.get("inference") or {})
    if inference.get("stride") is None:
        inference.pop("stride", None)
    if inference.get("mode") == "slide" and not inference.get("window"):
        # the training crop is the natural window; without one the user must name it
        inference["window"] = predictor.config.data.get("crop_size")
    threshold = cfg.get("threshold")
    alpha = cfg.get("overlay_alpha", 0.5)
    written: list[Path] = []
    overlays: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    def flush(batch: list[tuple[Target, np.ndarray, torch.Tensor]]) -> None:
        """Predict one batch of same-size images and write its masks (and overlays)."""
        if not batch:
            return
        logits = predictor.logits(torch.stack([t for _, _, t in batch]), **inference)
        for (target, image, _), item in zip(batch, logits, strict=True):
            if item.shape[-2:] != image.shape[:2]:  # the eval pipeline resized the image
                item = F.interpolate(item[None], image.shape[:2], mode="bilinear")[0]
            mask = predictor.masks(item[None], threshold)[0]
            written.extend(write_mask(mask, target.mask, predictor))
            if target.overlay is not None:
                save_png(Image.fromarray(overlay_of(image, mask, predictor, alpha)), target.overlay)
                overlays.append(target.overlay)
        bar.update(len(batch))
        batch.clear()

    with tqdm(
        total=len(files), desc="predict", unit="img", disable=not cfg.get("progress", True)
    ) as bar:
        batch: list[tuple[Target, np.ndarray, torch.Tensor]] = []
        for target in targets:
            try:
                image = read_image(target.source, predictor.in_channels)
                tensor = predictor.prepare(image)
            except LitsegError as err:
                reason = " ".join(str(err).split())  # one line, whatever the reader said
                if str(target.source) not in reason:
                    reason = f"{target.source}: {reason}"
                if on_error == "stop":
                    flush(batch)  # the images read before this one keep their masks
                    raise ConfigError(
                        f"{reason} (on_error=stop: stopped after writing {len(written)} masks "
                        f"to {output}; on_error=skip predicts the other images)"
                    ) from None
                skipped.append((target.source, reason))
                bar.update(1)
                continue
            if batch and (len(batch) == batch_size or batch[0][2].shape != tensor.shape):
                flush(batch)
            batch.append((target, image, tensor))
        flush(batch)
    predicted = len(files) - len(skipped)
    log.info("Wrote %d masks for %d images to %s", len(written), predicted, output)
    if skipped:
        log.warning(
            "Skipped %d of %d images that could not be read (on_error=skip): %s",
            len(skipped),
            len(files),
            " | ".join(reason for _, reason in skipped),
        )
    return {
        "output": str(output),
        "images": predicted,
        "masks": [str(p) for p in written],
        "overlays": [str(p) for p in overlays],
        "skipped": [str(p) for p, _ in skipped],
    }
