"""Optional dependencies: what each pip extra of litseg brings, and one line when it is missing.

The base install trains, evaluates and predicts. Three features need more:

- ``metrics``: MONAI, for the boundary metric HD95 (``module.boundary_metric=true``);
- ``export``: onnx, onnxscript and onnxruntime, for ``scripts/export.py format=onnx``;
- ``demo``: Gradio, for the browser demo ``python demo.py ckpt_path=...``.
"""

import importlib

from litseg.errors import ConfigError

EXTRAS: dict[str, tuple[str, ...]] = {
    "metrics": ("monai",),
    "export": ("onnx", "onnxscript", "onnxruntime"),
    "demo": ("gradio",),
}


def require_extra(
    extra: str, feature: str, instead: str | None = None, install: str | None = None
) -> None:
    """Import the modules of ``extra``; raise one ConfigError line when one is missing.

    Args:
        extra: a key of :data:`EXTRAS`.
        feature: what needs it, as the user asked for it (e.g. ``format=onnx``).
        instead: what works without it, added to the message (e.g. ``format=torchscript``).
        install: the command to print in place of ``pip install 'litseg[<extra>]'`` (e.g. the
            checkout's ``pip install -e ".[demo]"`` for a root script).
    """
    missing = []
    for name in EXTRAS[extra]:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        alternative = f" (or {instead})" if instead else ""
        verb = "is" if len(missing) == 1 else "are"
        command = install or f"pip install 'litseg[{extra}]'"
        raise ConfigError(
            f"{feature} needs {', '.join(missing)}, which {verb} not installed: "
            f"{command}{alternative}"
        )


__all__ = ["EXTRAS", "require_extra"]
