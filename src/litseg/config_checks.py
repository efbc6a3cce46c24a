"""Config values checked where they enter: one ConfigError line naming the key and its range.

``check_run_config(cfg)`` checks a composed train, eval or predict config before anything is
built; the DataModule and the inference functions check their own arguments with the same
helpers (``check_int``, ``check_number``, ``check_choice``, ``check_window``), so a bad value
reads e.g. ``data.batch_size=-4: expected an integer >= 1`` instead of a library traceback.

Batch limits (``trainer.limit_*_batches``, ``overfit_batches``) take null, an integer >= 1 or a
fraction in (0, 1]. 0 is Lightning's "off": refused for training (it would train nothing) and
for the split being evaluated or tested; ``limit_val_batches=0`` is allowed during training
(no validation) unless ``callbacks.early_stopping`` monitors a validation metric.
"""

import math
import re
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litseg.errors import ConfigError

_ABSENT = object()


def _show(value: Any) -> str:
    """A value as a user would type it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _or(options: list[str]) -> str:
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]


def _fail(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{key}={_show(value)}: {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(
    value: Any, key: str, minimum: int = 1, optional: bool = False, also: tuple[int, ...] = ()
) -> int | None:
    """``value`` if it is an integer >= ``minimum`` (or one of ``also``, or None if
    ``optional``); else a ConfigError such as ``data.batch_size=-4: expected an integer >= 1``."""
    if (value is None and optional) or (_is_int(value) and (value >= minimum or value in also)):
        return value
    options = ["null"] * optional + [str(v) for v in also] + [f"an integer >= {minimum}"]
    raise _fail(key, value, "expected " + _or(options))


def check_number(
    value: Any,
    key: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> float | None:
    """``value`` if it is a finite number within the bounds (open or closed), else ConfigError."""
    if value is None and optional:
        return value
    ok = (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return value
    bounds = [f"{'>' if low_open else '>='} {low:g}"] if low is not None else []
    bounds += [f"{'<' if high_open else '<='} {high:g}"] if high is not None else []
    wanted = " ".join(["a finite number", " and ".join(bounds)]).strip()
    raise _fail(key, value, "expected " + _or(["null"] * optional + [wanted]))


def check_choice(value: Any, key: str, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ConfigError listing them."""
    if value in choices:
        return value
    names = [c if isinstance(c, str) else _show(c) for c in choices]
    raise _fail(key, value, "expected one of " + ", ".join(names))


def check_window(value: Any, key: str = "inference.window", optional: bool = False) -> Any:
    """A window side in pixels, or [height, width], each an integer >= 1."""
    if value is None and optional:
        return value
    pair = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    if all(_is_int(s) and s >= 1 for s in (value if pair else [value])):
        return value
    options = ["null"] * optional + ["an integer >= 1", "[height, width] of integers >= 1"]
    raise _fail(key, value, "expected " + _or(options))


def check_limit(value: Any, key: str, zero: str | None = None) -> Any:
    """A Lightning batch limit: null, an integer >= 1 or a fraction in (0, 1].

    ``zero`` is why 0 cannot run here; None allows 0 (Lightning's "skip this loop").
    """
    number = isinstance(value, int | float) and not isinstance(value, bool)
    whole_count = _is_int(value) and value >= 1
    if value is None or whole_count or number and (0 < value <= 1 or value == 0 and not zero):
        return value
    options = ["null", "0 (off)"] if zero is None else ["null"]
    options += ["an integer >= 1", "a fraction in (0, 1]"]
    reason = f"{zero}; " if number and value == 0 else ""
    raise _fail(key, value, f"{reason}expected " + _or(options))


def check_devices(value: Any, key: str = "trainer.devices") -> Any:
    """Lightning's devices: auto, -1 (all), a count >= 1, or a list of device indices."""
    if value == "auto":
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        count = int(value)
        indices = None
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*,?\s*", value):
        count, indices = None, [int(v) for v in value.split(",") if v.strip()]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        count, indices = None, list(value)
    else:
        count, indices = value, None
    ok = (
        _is_int(count) and (count >= 1 or count == -1)
        if indices is None
        else bool(indices) and all(_is_int(i) and i >= 0 for i in indices)
    )
    if ok:
        return value
    raise _fail(key, value, "expected auto, -1 (all), an integer >= 1 or a list of device indices")


Rule = Callable[[Any, str], Any]
OPTIONAL_POSITIVE: Rule = partial(check_int, minimum=1, optional=True)
# key -> rule; keys a config lacks are skipped; ``*`` stands for every child of a node
RULES: tuple[tuple[str, Rule], ...] = (
    ("data.batch_size", check_int),
    ("data.eval_batch_size", OPTIONAL_POSITIVE),
    ("data.num_workers", partial(check_int, minimum=0, optional=True)),
    ("data.crop_size", OPTIONAL_POSITIVE),
    ("data.splits.*.length", OPTIONAL_POSITIVE),
    ("trainer.devices", check_devices),
    ("trainer.num_nodes", check_int),
    ("trainer.max_epochs", partial(check_int, optional=True, also=(-1,))),
    ("trainer.min_epochs", partial(check_int, minimum=0, optional=True)),
    ("trainer.max_steps", partial(check_int, also=(-1,))),
    ("trainer.min_steps", partial(check_int, minimum=0, optional=True)),
    ("trainer.check_val_every_n_epoch", OPTIONAL_POSITIVE),
    ("trainer.val_check_interval", partial(check_limit, zero="would never validate")),
    ("trainer.log_every_n_steps", check_int),
    ("trainer.num_sanity_val_steps", partial(check_int, minimum=-1)),
    ("trainer.accumulate_grad_batches", check_int),
    ("trainer.gradient_clip_val", partial(check_number, low=0, optional=True)),
    ("trainer.gradient_clip_algorithm", partial(check_choice, choices=("norm", "value"))),
    ("trainer.overfit_batches", check_limit),
    ("trainer.limit_predict_batches", check_limit),
    ("optimizer.lr", partial(check_number, low=0, low_open=True)),
    ("optimizer.weight_decay", partial(check_number, low=0)),
    ("optimizer.momentum", partial(check_number, low=0)),
    ("inference.mode", partial(check_choice, choices=("whole", "slide"))),
    ("inference.stride", OPTIONAL_POSITIVE),
    ("inference.window", partial(check_window, optional=True)),
    ("inference.overlap", partial(check_number, low=0, high=1, high_open=True)),
    ("inference.weighting", partial(check_choice, choices=("gaussian", "constant"))),
    ("inference.window_batch_size", check_int),
    (
        "inference.tta",
        partial(check_choice, choices=(None, "none", "flip", "hflip", "vflip", "d4")),
    ),
    ("batch_size", check_int),  # predict.yaml: images per forward pass
    ("report.worst_k", partial(check_int, minimum=0)),  # eval.yaml
    ("report.batch_size", check_int),
)


def _keys(cfg: DictConfig, pattern: str) -> Iterator[str]:
    """The keys ``pattern`` names in ``cfg`` (``a.*.b``: ``a.<child>.b`` for every child)."""
    if ".*." not in pattern:
        yield pattern
        return
    prefix, suffix = pattern.split(".*.", 1)
    node = OmegaConf.select(cfg, prefix, default=None)
    for name in node if isinstance(node, DictConfig) else ():
        yield f"{prefix}.{name}.{suffix}"


def _zero_limit_problem(cfg: DictConfig, split: str) -> str | None:
    """Why ``trainer.limit_<split>_batches=0`` cannot run with ``cfg`` (None: it can)."""
    evaluated = OmegaConf.select(cfg, "split", default=None)  # eval.yaml only
    if evaluated is not None:
        return f"would evaluate no batches (split={evaluated})" if split == evaluated else None
    training = OmegaConf.select(cfg, "train", default=True)
    if split == "train" and training:
        return "would train on no batches"
    if split == "test" and OmegaConf.select(cfg, "test", default=False):
        return "would test no batches; set test=false to skip testing"
    monitor = OmegaConf.select(cfg, "callbacks.early_stopping.monitor", default=None)
    if split == "val" and training and str(monitor or "").startswith("val"):
        return (
            f"turns validation off, but callbacks.early_stopping monitors {monitor}; "
            "add callbacks.early_stopping=null"
        )
    return None


def check_run_config(cfg: DictConfig) -> None:
    """Check the composed config's numeric knobs before anything is built (see RULES)."""
    for pattern, rule in RULES:
        for key in _keys(cfg, pattern):
            value = OmegaConf.select(cfg, key, default=_ABSENT)
            if value is not _ABSENT:
                rule(value, key)
    for split in ("train", "val", "test"):
        key = f"trainer.limit_{split}_batches"
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT:
            check_limit(value, key, zero=_zero_limit_problem(cfg, split))
