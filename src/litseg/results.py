"""Rows of docs/results.json: one per recipe and hardware, made from a finished run folder.

:data:`RECIPES` names the full recipes (conf/experiment/) with the labels the results tables
show; :func:`make_row` turns a run's summary.json and .hydra/config.yaml into a row and
:func:`update_results` writes it in place of the row of the same experiment and hardware.
Used by ``scripts/reproduce.py`` and ``scripts/record_result.py``.
"""

import json
import math
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from litseg.hardware import cpu_label, cpu_summary
from litseg.utils.io import atomic_write_text

PER_CLASS = ("/IoU_", "/dice_", "/HD95_")


@dataclass(frozen=True)
class Recipe:
    """One full recipe: its data folder, labels for the results table and GPU settings."""

    folder: str
    data: str
    loss: str
    metric: str
    gpu_minutes: int
    eval_batch_size: int


CAMVID = "CamVid 11 classes, val = 101 frames at 480x360"
MEMBRANE = "ISBI 2012 membrane, val = slices 24-29 at 512x512"
RECIPES: dict[str, Recipe] = {
    "camvid_unet": Recipe("camvid", CAMVID, "CE, void ignored", "val mIoU", 9, 16),
    "camvid_smp": Recipe("camvid", CAMVID, "CE, void ignored", "val mIoU", 8, 16),
    "membrane_unet": Recipe(
        "isbi2012_membrane", MEMBRANE, "Dice + BCE", "val Dice (membrane)", 5, 6
    ),
    "membrane_smp": Recipe(
        "isbi2012_membrane", MEMBRANE, "Dice + BCE", "val Dice (membrane)", 5, 6
    ),
    "camvid_cpu": Recipe(
        "camvid", CAMVID, "CE, sqrt median-frequency weights, void ignored", "val mIoU", 7, 16
    ),
    "membrane_cpu": Recipe(
        "isbi2012_membrane", MEMBRANE, "Dice + BCE", "val Dice (membrane)", 5, 6
    ),
}


def hardware_name(device: str, summary: dict[str, Any] | None = None) -> str:
    """The GPU's name (from the run's summary, else asked here), or ``<cores>-core <CPU>``."""
    if device == "cuda":
        name = ((summary or {}).get("host") or {}).get("cuda")
        if not name:
            import torch

            name = torch.cuda.get_device_name(0)
        return str(name)
    return cpu_label()


def fmt_duration(seconds: float) -> str:
    """``2 min 59 s`` (``1 h 4 min`` above an hour), as the results table writes it."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


def run_config(run_dir: Path) -> Any:
    """The run's composed config, .hydra/config.yaml (interpolations left unresolved)."""
    from omegaconf import OmegaConf

    return OmegaConf.load(run_dir / ".hydra" / "config.yaml")


def select(cfg: Any, key: str) -> Any:
    """``cfg``'s value at the dotted ``key``; None when missing or not resolvable."""
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)


def describe_model(cfg: Any) -> str:
    """The network as the run built it, with its crop and batch size."""
    target = str(select(cfg, "model._target_") or "")
    if target.endswith("SMPModel"):
        pretrained = "pretrained" if select(cfg, "model.pretrained") else "no pretraining"
        model = (
            f"smp {select(cfg, 'model.arch')}, {select(cfg, 'model.encoder')} encoder, {pretrained}"
        )
    elif target.endswith("UNet"):
        model = (
            f"U-Net, width {select(cfg, 'model.base_width')}, depth {select(cfg, 'model.depth')}"
        )
    else:
        model = target.rsplit(".", 1)[-1]
    return (
        f"{model}; {select(cfg, 'data.crop_size')} px crops, batch {select(cfg, 'data.batch_size')}"
    )


def make_row(
    name: str,
    run_dir: Path,
    command: list[str],
    wall_s: float,
    device: str,
    smoke: bool,
    log_text: str = "",
) -> dict[str, Any]:
    """One results row from a finished run's summary.json and .hydra/config.yaml."""
    recipe = RECIPES[name]
    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = run_config(run_dir)
    metrics: dict[str, float] = summary.get("metrics", {})
    monitor = summary.get("monitor") or "val/mIoU"
    value = _finite(summary.get("best_score"))
    if value is None:
        value = _finite(metrics.get(monitor))
    if value is None:
        raise RuntimeError(f"{run_dir / 'summary.json'} holds no {monitor}")
    done, max_epochs = int(summary.get("epochs") or 0), select(cfg, "trainer.max_epochs")
    epochs = str(done)
    if max_epochs is not None and done < int(max_epochs):
        cap = select(cfg, "trainer.max_time")
        reason = "time cap" if cap and "Time limit reached" in log_text else "early stop"
        epochs = f"{done} of {max_epochs} ({reason})"
    val = {k: v for k, v in metrics.items() if k.startswith("val/") and not _per_class(k)}
    test = {k: v for k, v in metrics.items() if k.startswith("test/") and not _per_class(k)}
    per_class = {k.split("/IoU_", 1)[1]: v for k, v in metrics.items() if k.startswith("val/IoU_")}
    if monitor == "val/dice":
        also = (
            f"last val: Dice {_fmt(val.get('val/dice'))}, IoU {_fmt(val.get('val/mIoU'))}, "
            f"pixel acc {_fmt(val.get('val/pixel_acc'))}"
        )
    else:
        also = (
            f"last val: mIoU {_fmt(val.get('val/mIoU'))}, "
            f"pixel acc {_fmt(val.get('val/pixel_acc'))}, "
            f"mean class acc {_fmt(val.get('val/mean_class_acc'))}"
        )
    return {
        "experiment": f"`experiment={name}`" + (", smoke test" if smoke else ""),
        "data": recipe.data,
        "model": describe_model(cfg),
        "loss": recipe.loss,
        "metric": f"best {recipe.metric}",
        "value": round(float(value), 4),
        "also": also,
        "epochs": epochs,
        "wall": fmt_duration(wall_s),
        "hardware": hardware_name(device, summary),
        "command": shlex.join(command),
        "recipe": name,
        "device": device,
        "smoke": smoke,
        "host": {**cpu_summary(), "gpu": (summary.get("host") or {}).get("cuda")},
        "wall_s": round(wall_s, 1),
        "epochs_run": done,
        "max_epochs": max_epochs,
        "monitor": monitor,
        "val_metrics": _rounded(val),
        "per_class_iou": _rounded(per_class),
        **({"test_metrics": _rounded(test)} if test else {}),
        "git_commit": summary.get("git_commit"),
        "date": datetime.now().strftime("%Y-%m-%d"),
    }


def _per_class(key: str) -> bool:
    return any(s in key for s in PER_CLASS)


def _finite(value: Any) -> float | None:
    """A float, or None for a missing, NaN or infinite value (summaries write NaN as null)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _fmt(value: Any) -> str:
    value = _finite(value)
    return "n/a" if value is None else f"{value:.3f}"


def _rounded(values: dict[str, Any]) -> dict[str, float | None]:
    """Rounded values, None where a value is missing or not finite (strict JSON)."""
    return {
        k: (None if _finite(v) is None else round(_finite(v), 4)) for k, v in sorted(values.items())
    }


def update_results(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace the rows of the same experiment + hardware, append the others; write atomically."""
    data = json.loads(path.read_text()) if path.is_file() else {"results": []}
    results = data.setdefault("results", [])
    for row in rows:
        key = (row["experiment"], row["hardware"])
        for i, old in enumerate(results):
            if (old.get("experiment"), old.get("hardware")) == key:
                results[i] = row
                break
        else:
            results.append(row)
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
