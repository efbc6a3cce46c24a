"""The browser demo behind ``python demo.py ckpt_path=<checkpoint or run dir>`` (Gradio).

Upload an image, see the predicted mask in the dataset's palette and its overlay, choose
whole-image or sliding-window inference and flip TTA, download the mask PNG.

The predictions are predict.py's: the network, eval pipeline, classes and palette come from
:func:`litseg.predict.load_predictor` (the checkpoint's stored config checked against the
target allowlist first), the upload is read by predict's own ``read_image``, logits come from
``Predictor.logits`` (:func:`litseg.inference.infer`) and the PNG is written by predict's
``write_mask``, so it equals ``python predict.py`` on the same image and settings byte for
byte. Gradio is imported only when the demo starts: it is an optional extra.
"""

import html
import inspect
import logging
import os
import shutil
import signal
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from PIL import Image

from litseg.builders import require
from litseg.config_checks import check_number, check_run_config, check_window
from litseg.errors import ConfigError, LitsegError
from litseg.extras import require_extra
from litseg.inference import MODES, TTAS
from litseg.predict import (
    Predictor,
    load_predictor,
    overlay_of,
    read_image,
    save_png,
    write_mask,
)
from litseg.runtime.resume import checkpoint_file
from litseg.visualize import colorize

log = logging.getLogger(__name__)

INSTALL = 'pip install -e ".[demo]"'
TTA_CHOICES = tuple(t for t in TTAS if t is not None)
# the inference keys each mode reads (conf/inference/<mode>.yaml); the others are dropped
MODE_KEYS = {
    "whole": ("stride",),
    "slide": ("window", "overlap", "weighting", "window_batch_size"),
}
# request folders kept on disk: Gradio copies each result into its cache when it is returned
KEEP_REQUESTS = 4


def parse_window(text: str | int | None, default: Any) -> Any:
    """A window typed on the page: ``64``, ``48x64`` or ``48,64`` ([height, width]); empty:
    ``default`` (the config's inference.window, else the checkpoint's data.crop_size)."""
    if text is None or str(text).strip() == "":
        return default
    parts = str(text).lower().replace("x", ",").split(",")
    try:
        sizes = [int(p.strip()) for p in parts]
    except ValueError:
        raise ConfigError(
            f"window={text!r}: expected a side in pixels (64) or height x width (48x64)"
        ) from None
    window = sizes[0] if len(sizes) == 1 else sizes
    return check_window(window, "window")


@dataclass
class DemoResult:
    """What one request returns: the prediction, its pictures and the mask file(s)."""

    mask: np.ndarray
    colour: np.ndarray
    overlay: Path
    files: list[Path]


class DemoPredictor:
    """A loaded checkpoint answering uploads as predict.py would answer the same file."""

    def __init__(
        self,
        predictor: Predictor,
        inference: dict[str, Any],
        threshold: float | None = None,
        alpha: float = 0.5,
        workdir: Path | None = None,
    ) -> None:
        self.predictor = predictor
        self.inference = dict(inference)
        self.threshold = threshold
        self.alpha = alpha
        # made on the first request (a temporary folder unless given), removed by close()
        self.workdir = Path(workdir) if workdir is not None else None
        self.requests: deque[Path] = deque()

    @property
    def default_mode(self) -> str:
        """The inference mode the config starts with."""
        return str(self.inference.get("mode") or "whole")

    @property
    def default_tta(self) -> str:
        """The TTA the config starts with (``none`` for null)."""
        return str(self.inference.get("tta") or "none")

    @property
    def default_window(self) -> Any:
        """The sliding window when none is typed: the config's, else the training crop."""
        return self.inference.get("window") or self.predictor.config.data.get("crop_size")

    def options(self, mode: str, tta: str, window: Any = None) -> dict[str, Any]:
        """predict.py's inference options for ``mode``: the config's keys of that mode (the
        others fall to :func:`litseg.inference.infer`'s defaults, which are those of
        conf/inference/<mode>.yaml), the page's TTA and, for slide, its window."""
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r}; expected one of {', '.join(MODES)}")
        if tta not in TTA_CHOICES:
            raise ConfigError(f"tta={tta!r}; expected one of {', '.join(TTA_CHOICES)}")
        options = {k: v for k, v in self.inference.items() if k in MODE_KEYS[mode]}
        options.update(mode=mode, tta=None if tta == "none" else tta)
        if mode == "slide":
            options["window"] = self.default_window if window is None else window
        return options

    def predict(
        self, image_path: str | Path, mode: str, tta: str, window: Any = None
    ) -> DemoResult:
        """The mask of one image file (predict.py's, byte for byte), its colour picture and
        overlay, written under a fresh request folder as ``<stem>.png``."""
        predictor = self.predictor
        options = self.options(mode, tta, window)
        image_path = Path(image_path)
        image = read_image(image_path, predictor.in_channels)
        tensor = predictor.prepare(image)
        logits = predictor.logits(tensor[None], **options)[0]
        if logits.shape[-2:] != image.shape[:2]:  # the eval pipeline resized the image
            logits = F.interpolate(logits[None], image.shape[:2], mode="bilinear")[0]
        mask = predictor.masks(logits[None], self.threshold)[0]
        folder = self._request_folder()
        files = write_mask(mask, folder / f"{image_path.stem}.png", predictor)
        overlay = folder / "overlays" / f"{image_path.stem}.png"
        save_png(Image.fromarray(overlay_of(image, mask, predictor, self.alpha)), overlay)
        return DemoResult(
            mask=mask, colour=colour_mask(mask, predictor), overlay=overlay, files=files
        )

    def _request_folder(self) -> Path:
        """A new folder for one request's files; the oldest beyond KEEP_REQUESTS go."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="litseg-demo-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.workdir))
        self.requests.append(folder)
        while len(self.requests) > KEEP_REQUESTS:
            shutil.rmtree(self.requests.popleft(), ignore_errors=True)
        return folder

    def close(self) -> None:
        """Remove every request folder."""
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.requests.clear()


def colour_mask(mask: np.ndarray, predictor: Predictor) -> np.ndarray:
    """An RGB picture of a prediction in the dataset's palette (binary: black/red;
    multilabel: the first active label's colour, black where none is)."""
    if predictor.task == "multilabel":
        active = mask.any(axis=0)
        shown = np.where(active, mask.argmax(axis=0) + 1, 0)
        return colorize(shown, np.concatenate([[[0, 0, 0]], predictor.palette]))
    if predictor.task == "binary":
        return colorize(mask, [[0, 0, 0], [255, 0, 0]])
    return colorize(mask, predictor.palette)


def legend(mask: np.ndarray, predictor: Predictor) -> str:
    """HTML: each class's colour swatch, name and share of the image's pixels."""
    if predictor.task == "multilabel":
        names, colours = predictor.class_names, predictor.palette
        shares = [float(channel.mean()) for channel in mask]
    elif predictor.task == "binary":
        name = predictor.class_names[-1] if predictor.class_names else "foreground"
        names, colours = ["background", name], [[0, 0, 0], [255, 0, 0]]
        shares = [float((mask == 0).mean()), float((mask == 1).mean())]
    else:
        names, colours = predictor.class_names, predictor.palette
        counts = np.bincount(mask.reshape(-1), minlength=len(names))
        shares = (counts[: len(names)] / max(mask.size, 1)).tolist()
    rows = []
    for name, colour, share in zip(names, colours, shares, strict=False):
        r, g, b = (int(c) for c in colour)
        rows.append(
            f'<span style="display:inline-block;margin:0 1em 0.3em 0">'
            f'<span style="display:inline-block;width:0.9em;height:0.9em;'
            f'background:rgb({r},{g},{b});border:1px solid #888;vertical-align:middle"></span> '
            f"{html.escape(str(name))} {100 * share:.1f}%</span>"
        )
    return "<div>" + "".join(rows) + "</div>"


def build_app(runner: DemoPredictor, title: str) -> Any:
    """The Gradio Blocks page of the demo (imports gradio: call after :func:`require_extra`)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    predictor = runner.predictor
    window = runner.default_window
    window_text = "x".join(map(str, window)) if isinstance(window, list | tuple) else window

    def segment(path: str | None, mode: str, tta: str, window_typed: str) -> tuple[Any, ...]:
        """One request: the mask picture, the overlay, the legend and the mask file(s)."""
        if not path:
            raise gr.Error("Upload an image first.")
        try:
            window_value = parse_window(window_typed, None)
            result = runner.predict(path, mode, tta, window_value)
        except LitsegError as err:
            raise gr.Error(" ".join(str(err).split())) from None
        files = [str(p) for p in result.files]
        return result.colour, str(result.overlay), legend(result.mask, predictor), files

    names = ", ".join(predictor.class_names)
    # uploads and results leave Gradio's cache after an hour, and when the server stops
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown(
            f"## {html.escape(title)}\n{predictor.task}, {predictor.num_classes} classes: "
            f"{html.escape(names)}. Masks equal `python predict.py` on the same image."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="filepath",
                    image_mode=None,  # the file as uploaded: predict.py's reader reads it
                    sources=["upload", "clipboard"],
                    label="Image",
                    elem_id="demo-input",
                )
                mode = gr.Radio(
                    list(MODES),
                    value=runner.default_mode,
                    label="Inference",
                    info="whole: one padded pass; slide: overlapping windows",
                    elem_id="demo-mode",
                )
                window_box = gr.Textbox(
                    value="" if window_text is None else str(window_text),
                    label="Slide window (pixels, or height x width)",
                    elem_id="demo-window",
                )
                tta = gr.Radio(
                    list(TTA_CHOICES),
                    value=runner.default_tta,
                    label="Flip TTA",
                    elem_id="demo-tta",
                )
                button = gr.Button("Segment", variant="primary", elem_id="demo-run")
            with gr.Column():
                mask = gr.Image(label="Mask", format="png", interactive=False, elem_id="demo-mask")
                overlay = gr.Image(
                    label="Overlay", format="png", interactive=False, elem_id="demo-overlay"
                )
                classes = gr.HTML(elem_id="demo-legend")
                download = gr.File(
                    label="Mask PNG (as predict.py writes it)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="demo-download",
                )
        outputs = [mask, overlay, classes, download]
        inputs = [image, mode, tta, window_box]
        image.upload(segment, inputs, outputs, concurrency_limit=1)
        button.click(segment, inputs, outputs, concurrency_limit=1)
    return app


def load_runner(cfg: DictConfig) -> tuple[DemoPredictor, Path]:
    """The demo's predictor for a composed conf/demo.yaml, and the checkpoint file it loaded
    (no Gradio needed: this is what the page calls for every upload)."""
    check_run_config(cfg)
    alpha = cfg.get("overlay_alpha", 0.5)
    check_number(alpha, "overlay_alpha", low=0, high=1)
    ckpt = checkpoint_file(require(cfg, "ckpt_path"))
    device = cfg.get("device") or "auto"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    predictor = load_predictor(ckpt, device, list(cfg.get("allow_targets") or []))
    inference = dict(cfg.get("inference") or {})
    if inference.get("stride") is None:
        inference.pop("stride", None)
    return DemoPredictor(predictor, inference, cfg.get("threshold"), float(alpha)), ckpt


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: a KeyboardInterrupt, on which Gradio closes its server."""
    raise KeyboardInterrupt


def demo(cfg: DictConfig) -> dict[str, Any]:
    """Load the checkpoint and serve the demo page until interrupted."""
    require_extra("demo", "python demo.py", install=INSTALL)
    settings = cfg.get("demo") or {}
    host = str(settings.get("host") or "127.0.0.1")
    port = settings.get("port", 7860)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"demo.port={port}; expected an integer in 1..65535")
    share = settings.get("share", False)
    if not isinstance(share, bool):
        raise ConfigError(f"demo.share={share}; expected true or false")
    runner, ckpt = load_runner(cfg)
    predictor = runner.predictor
    title = settings.get("title") or f"litseg demo: {ckpt.name}"
    app = build_app(runner, str(title))
    options: dict[str, Any] = {
        "server_name": host,
        "server_port": port,
        "share": share,
        "show_error": True,
        "quiet": True,  # Gradio's own hints name launch(); litseg says demo.share instead
        "prevent_thread_lock": True,
    }
    if "run_history" in inspect.signature(app.launch).parameters:  # Gradio 6
        options["run_history"] = False  # no saved runs (nor a bucket to send them to)
    try:
        try:
            _, local_url, share_url = app.launch(**options)
        except OSError as exc:  # the port is taken, or the host cannot be bound
            why = str(exc).split(". ")[0].rstrip(".")  # Gradio's hint names launch()
            raise ConfigError(
                f"demo.host={host} demo.port={port}: cannot serve there ({why}); "
                "choose another demo.port (or demo.host)"
            ) from None
        log.info("Serving %s (%s, %s)", ckpt.name, predictor.task, ", ".join(predictor.class_names))
        log.info("Open %s in a browser; Ctrl+C stops", local_url)
        if share_url:
            log.info(
                "Public link (demo.share=true; anyone with it can use the demo): %s", share_url
            )
        signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl+C: close, clean up
        app.block_thread()
    finally:
        runner.close()
    return {"checkpoint": str(ckpt), "url": local_url}
