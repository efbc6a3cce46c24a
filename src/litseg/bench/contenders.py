"""Inference contenders timed against each other: litseg's sliding window vs MONAI's, and
onnxruntime (CPU) vs litseg's eager path. Used by ``compare`` and ``inference``."""

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn


def slide_contenders(
    net: nn.Module, image: torch.Tensor, window: int, overlap: float, sw_batch: int
) -> tuple[dict[str, Callable[[], torch.Tensor]], float]:
    """litseg's slide and MONAI's sliding_window_inference on one model and image, and their
    max output difference (call under torch.inference_mode)."""
    from monai.inferers import sliding_window_inference

    from litseg.inference import slide

    fns = {
        "litseg slide": lambda: slide(net, image, window, overlap, batch_size=sw_batch),
        "MONAI sliding_window_inference": lambda: sliding_window_inference(
            image, (window, window), sw_batch, net, overlap=overlap, mode="gaussian"
        ),
    }
    ours, theirs = (fn() for fn in fns.values())
    return fns, (ours - theirs).abs().max().item()


@contextmanager
def onnx_contenders(
    net: nn.Module, batch: torch.Tensor, threads: int
) -> Iterator[tuple[dict[str, Callable[[], object]], float]]:
    """litseg's eager inference path and onnxruntime (CPU) on the exported model, and their max
    output difference (time them under torch.inference_mode)."""
    import onnxruntime as ort

    from litseg.export import Exportable, export_model
    from litseg.inference import model_stride, whole

    stride = model_stride(net)
    model = Exportable(net.eval(), stride=stride).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_model(model, Path(tmp) / "net.onnx", "onnx", torch.randn(1, 3, 64, 64))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        x = batch.numpy()
        fns = {
            "PyTorch eager (litseg whole)": lambda: whole(net, batch, stride),
            "onnxruntime CPU": lambda: session.run(None, {"image": x})[0],
        }
        with torch.inference_mode():
            eager, ort_out = (fn() for fn in fns.values())
        yield fns, float(abs(ort_out - eager.numpy()).max())
