"""Export behind ``python scripts/export.py ckpt_path=... format=onnx|torchscript output=...``.

The exported graph takes normalised images (N, C, H, W) of any height and width and returns
logits at the same size: a thin wrapper pads to the model's stride and crops back inside the
graph, so models such as the U-Net, whose skip connections need sizes divisible by
``2**depth``, work at every size. A JSON file beside the model holds what a user needs to
feed it (mean, std, channels) and read it (task, classes, palette, threshold).
"""

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from litseg.builders import require
from litseg.errors import ConfigError
from litseg.extras import require_extra
from litseg.inference import logits_of, pad_to_multiple
from litseg.predict import Predictor, find_images, load_predictor, read_image

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
AXES = {0: "batch", 2: "height", 3: "width"}  # the free dimensions of an exported graph


class Exportable(nn.Module):
    """Logits at the input's size for any size: pad to ``stride`` by reflection as
    ``inference=whole`` does (:func:`litseg.inference.pad_to_multiple`), run, crop; no
    branches, so one graph serves every size."""

    def __init__(self, net: nn.Module, stride: int) -> None:
        super().__init__()
        self.net = net
        self.stride = stride

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2], image.shape[-1]
        logits = logits_of(self.net, pad_to_multiple(image, self.stride))
        return logits[:, :, :h, :w]


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str = "onnx",
    example: torch.Tensor | None = None,
    opset: int = 18,
    dynamo: bool = True,
) -> Path:
    """Write ``model`` as ONNX (dynamic batch, height, width) or TorchScript (traced).

    ONNX goes into one self-contained file (weights inside), which can be copied alone;
    torch stores the weights beside it (``<path>.data``) only for models above 1.5 GB, as
    the ONNX format's 2 GB limit requires. Without the ``export`` extra, ONNX raises one
    ConfigError line saying what to install.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        require_extra("export", "format=onnx", "format=torchscript")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if example is None:
        example = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), warnings.catch_warnings():
        if fmt == "torchscript":
            # the U-Net's own size check becomes a constant in the trace; Exportable always
            # feeds it sizes that are multiples of its stride, and the parity check runs
            # other sizes through the traced file
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            traced = torch.jit.trace(model, example, check_trace=False)
            traced.save(str(path))
            return path
        # batch, height and width stay free: the dynamo exporter takes them as Dims, the
        # TorchScript-based one as axis names
        if dynamo:
            logging.getLogger("onnx_ir").setLevel(logging.WARNING)  # one line per initializer
            dims = {i: torch.export.Dim(name) for i, name in AXES.items()}
            free = {"dynamic_shapes": {"image": dims}, "verbose": False}
        else:
            free = {"dynamic_axes": {"image": AXES, "logits": AXES}}
        stale = path.with_name(path.name + ".data")  # weights of an earlier two-file export
        if stale.is_file():
            stale.unlink()
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            opset_version=opset,
            dynamo=dynamo,
            external_data=False,
            **free,
        )
    return path


def load_exported(path: str | Path, fmt: str) -> Any:
    """A callable numpy (N, C, H, W) float32 -> logits for an exported file."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]
    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def parity(model: nn.Module, exported: Any, images: list[torch.Tensor]) -> list[dict[str, Any]]:
    """Max absolute logit difference between PyTorch and the exported model, per image."""
    rows = []
    for image in images:
        x = image[None] if image.ndim == 3 else image
        with torch.no_grad():
            ref = model(x).numpy()
        out = exported(x.numpy().astype(np.float32))
        if out.shape != ref.shape:
            raise AssertionError(f"exported output shape {out.shape} != PyTorch {ref.shape}")
        rows.append({"shape": list(x.shape), "max_abs_diff": float(np.abs(out - ref).max())})
    return rows


def real_images(predictor: Predictor, source: str | None, count: int) -> list[torch.Tensor]:
    """Up to ``count`` real images: files under ``source``, else the training data's test split."""
    if source:
        _, files = find_images(source)
        return [predictor.prepare(read_image(p, predictor.in_channels)) for p in files[:count]]
    from litseg.builders import build_datamodule

    try:
        datamodule = build_datamodule(predictor.config)
        split = next(s for s in ("test", "val", "train") if s in datamodule.split_args)
        dataset = datamodule.build(split)
    except Exception as exc:  # the data may live on another machine: say so, check the rest
        log.warning("no real images for the parity check (%s); set parity.images=<folder>", exc)
        return []
    return [dataset[i]["image"] for i in range(min(count, len(dataset)))]


def metadata(predictor: Predictor, fmt: str) -> dict[str, Any]:
    """What a user of the exported file needs besides the file itself."""
    data = predictor.config.data
    return {
        "format": fmt,
        "input": "image (N, C, H, W) float32, normalised: (pixel / max_pixel_value - mean) / std",
        "output": "logits (N, K, H, W) at the input's size",
        "task": predictor.task,
        "num_classes": predictor.num_classes,
        "class_names": predictor.class_names,
        "palette": predictor.palette[: max(predictor.num_classes, 2)].tolist(),
        "in_channels": predictor.in_channels,
        "mean": list(data.get("mean") or []),
        "std": list(data.get("std") or []),
        "threshold": predictor.threshold,
        "stride": predictor.stride,
    }


def export(cfg: DictConfig) -> dict[str, Any]:
    """Export the checkpoint, then check parity on random and real images (max |diff|)."""
    ckpt_path = require(cfg, "ckpt_path")
    fmt = require(cfg, "format")
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r}; expected one of {', '.join(FORMATS)}")
    output = Path(require(cfg, "output"))
    predictor = load_predictor(ckpt_path, "cpu", list(cfg.get("allow_targets") or []))
    model = Exportable(predictor.net, predictor.stride).eval()
    c = predictor.in_channels
    example = torch.randn(1, c, 2 * predictor.stride, 2 * predictor.stride)
    export_model(model, output, fmt, example, cfg.get("opset", 18), cfg.get("dynamo", True))
    meta_path = output.with_name(output.name + ".json")
    meta = metadata(predictor, fmt)

    check = cfg.get("parity") or {}
    tolerance = float(check.get("tolerance", 1e-4))
    generator = torch.Generator().manual_seed(0)
    sizes = [tuple(s) for s in check.get("random_sizes", [[1, 64, 64], [2, 97, 131]])]
    images = [torch.randn(n, c, h, w, generator=generator) for n, h, w in sizes]
    images += real_images(predictor, check.get("images"), int(check.get("real_count", 2)))
    rows = parity(model, load_exported(output, fmt), images)
    worst = max(r["max_abs_diff"] for r in rows)
    meta["parity"] = {"tolerance": tolerance, "max_abs_diff": worst, "checks": rows}
    meta_path.write_text(json.dumps(meta, indent=2))
    for row in rows:
        log.info("parity %s: max |diff| = %.3g", row["shape"], row["max_abs_diff"])
    log.info("Exported %s to %s (max |diff| %.3g over %d inputs)", fmt, output, worst, len(rows))
    print(f"max_abs_diff={worst:.3g} over {len(rows)} inputs (tolerance {tolerance:g})")
    if worst > tolerance:
        raise ConfigError(
            f"parity.tolerance={tolerance:g}: the exported model differs from PyTorch "
            f"by {worst:.3g}"
        )
    return {"output": str(output), "metadata": str(meta_path), "max_abs_diff": worst}
