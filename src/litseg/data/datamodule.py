"""SegmentationDataModule: one LightningDataModule for every dataset litseg knows."""

import difflib
import functools
import inspect
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningDataModule
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from litseg.config_checks import check_int
from litseg.data.checks import verify
from litseg.data.resumable import SEED_SPACE, EpochSampler, ResumableLoader, SeededSamples
from litseg.errors import ConfigError, DataError

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
# what the data is, handed to a dataset factory that takes it (and is not given it in
# data.dataset or data.splits): a dataset class reads these from the data config, never
# holds its own copy
DATA_FACTS = ("task", "num_classes", "ignore_index", "in_channels")
# ``data.<key>`` (or ``${..key}`` inside data) in an interpolation: that key is read
DATA_REFERENCE = re.compile(r"(?<![\w.])data\.([A-Za-z_]\w*)|\$\{\.\.([A-Za-z_]\w*)")


def default_num_workers() -> int:
    """One worker per spare CPU core (at most 8), leaving one core to the training loop."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(8, (cores or 1) - 1))


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` (a class or a partial of one) takes a keyword ``name``."""
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _given(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory`` is a partial that already binds the keyword ``name``."""
    return isinstance(factory, functools.partial) and name in factory.keywords


def _strings(node: Any) -> list[str]:
    """Every string value under a plain container (dicts, lists)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list | tuple):
        return [s for value in node for s in _strings(value)]
    return []


def datamodule_keys() -> set[str]:
    """The data keys SegmentationDataModule itself takes (``**options`` aside)."""
    parameters = inspect.signature(SegmentationDataModule.__init__).parameters
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name for name, p in parameters.items() if p.kind in named and name != "self"}


def check_data_keys(cfg: DictConfig) -> None:
    """Refuse a data key left unset (``???``, e.g. data=folder without ``data.root``) or one
    that nothing uses (e.g. ``+data.bacth_size=8``), in one line naming it and, for the
    latter, the key it was probably meant to be.

    A key is used when SegmentationDataModule takes it or an interpolation in the composed
    config reads it (``${data.fold}`` in ``data.dataset``, ``${data.class_weights}`` in the
    loss, ...): that is how a dataset config declares its own settings. A config without
    interpolations in ``data`` (a checkpoint's stored config, resolved when it was written
    and checked when it was composed) is not checked.
    """
    data = cfg.get("data")
    if not isinstance(data, DictConfig):
        return
    for key in data:
        # before anything reads it through an interpolation (which would name the reader)
        if OmegaConf.is_missing(data, key):
            raise ConfigError(
                f"config key 'data.{key}' is missing; set it on the command line "
                f"(e.g. data.{key}=...)"
            )
    tree = OmegaConf.to_container(cfg, resolve=False)
    tree.pop("hydra", None)  # its record of the command line names every override
    if not any("${" in text for text in _strings(tree.get("data"))):
        return
    read = {a or b for text in _strings(tree) for a, b in DATA_REFERENCE.findall(text)}
    known = datamodule_keys() | read
    for key in data:
        if key in known or str(key).startswith("_"):
            continue
        close = difflib.get_close_matches(str(key), sorted(known), n=1)
        hint = f"; did you mean data.{close[0]}?" if close else ""
        raise ConfigError(
            f"data.{key} is not a data setting: SegmentationDataModule does not take it and "
            f"nothing in the config reads ${{data.{key}}}{hint}"
        )


class PadCollate:
    """Batch samples of different sizes by padding to the largest (images with 0, masks with
    ``mask_fill``, which should be the ignore index so padding never counts); samples of one
    size are batched as they are."""

    def __init__(self, mask_fill: int | None) -> None:
        self.mask_fill = mask_fill

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        sizes = {tuple(s["image"].shape[-2:]) for s in samples}
        if len(sizes) == 1:
            return default_collate(list(samples))
        if self.mask_fill is None:
            raise DataError(
                f"a batch holds images of sizes {sorted(sizes)} and the data has no "
                "ignore_index to pad masks with; set data.eval_batch_size=1 or crop "
                "to one size in the augment pipeline"
            )
        height = max(h for h, _ in sizes)
        width = max(w for _, w in sizes)
        padded = []
        for s in samples:
            dh, dw = height - s["image"].shape[-2], width - s["image"].shape[-1]
            padded.append(
                {
                    **s,
                    "image": F.pad(s["image"], [0, dw, 0, dh]),
                    "mask": F.pad(s["mask"], [0, dw, 0, dh], value=self.mask_fill),
                }
            )
        return default_collate(padded)


class SegmentationDataModule(LightningDataModule):
    """Builds each split's dataset from one dataset factory and per-split arguments.

    Args:
        dataset: a factory (Hydra ``_partial_``) called as ``dataset(**splits[name],
            transform=...)`` for each split; a factory that takes ``task``, ``num_classes``,
            ``ignore_index`` or ``in_channels`` gets them from here unless ``dataset`` or the
            split sets them (so a dataset class never holds its own copy of them).
        splits: split name (train, val, test) -> keyword arguments for ``dataset``.
        task, num_classes, ignore_index, class_names, in_channels, mean, std, palette: what
            the data is, written once in its conf/data YAML; models, losses and metrics take
            them from here by interpolation.
        class_weights: published per-class loss weights of the dataset (e.g. SegNet's for
            CamVid), for ``loss.class_weights=${data.class_weights}``; unused otherwise.
        train_transform, eval_transform: pipelines for training and for val/test.
        batch_size, eval_batch_size: loader batch sizes (eval defaults to batch_size).
        num_workers: loader processes; None picks one per spare CPU core.
        pin_memory: None pins when CUDA is available.
        persistent_workers: keep loader processes alive between epochs.
        crop_size: training crop side in pixels, read by the augment presets.
        mask_fill: the mask value for padded pixels (augment padding and batches of mixed
            sizes); the ignore index where the data has one.
        check: what setup verifies in file-backed splits: ``none``, ``headers`` (files open,
            image and mask sizes agree, a sample of masks decoded in the declared encoding) or
            ``full`` (every file decoded, every mask's values checked); both refuse masks that
            are mostly the ignore index while a class never appears.

        root: where the dataset's files live (data configs interpolate it into ``dataset``).
        options: further dataset settings that data configs interpolate into ``dataset``
            (e.g. ``fold``, ``val_fraction``, ``download``, ``mask_values``), kept here for the
            record; predict.py reads ``mask_values`` / ``mask_palette`` from a checkpoint's
            stored config to write masks in the training masks' encoding.

    A split's arguments may hold ``when_exists: <path>``: the split is used only when that
    path exists (e.g. an optional test folder); and ``length: N`` for datasets that do not
    take a length themselves: only their first N samples are used (quick runs, tests).
    """

    def __init__(
        self,
        dataset: Callable[..., Dataset],
        splits: Mapping[str, Mapping[str, Any]],
        task: str,
        num_classes: int,
        ignore_index: int | None = None,
        class_names: list[str] | None = None,
        in_channels: int = 3,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        palette: list[list[int]] | None = None,
        class_weights: list[float] | None = None,
        train_transform: Callable[..., dict[str, Any]] | None = None,
        eval_transform: Callable[..., dict[str, Any]] | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        crop_size: int | None = None,
        mask_fill: int | None = None,
        check: str = "headers",
        root: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        unknown = set(splits) - {"train", "val", "test"}
        if unknown:
            raise ConfigError(
                f"data.splits has unknown names {sorted(unknown)}; expected train, val, test"
            )
        check_int(batch_size, "data.batch_size")
        check_int(eval_batch_size, "data.eval_batch_size", optional=True)
        check_int(num_workers, "data.num_workers", minimum=0, optional=True)
        check_int(crop_size, "data.crop_size", optional=True)
        self.dataset_factory = dataset
        self.split_args = {}
        for name, args in splits.items():
            args = dict(args or {})
            # 0 is let through to setup, which names the split as empty
            check_int(args.get("length"), f"data.splits.{name}.length", minimum=0, optional=True)
            when = args.pop("when_exists", None)
            if when is None or Path(when).exists():
                self.split_args[name] = args
        self.task, self.num_classes, self.ignore_index = task, num_classes, ignore_index
        self.class_names = list(class_names) if class_names else None
        self.in_channels, self.mean, self.std, self.palette = in_channels, mean, std, palette
        self.class_weights = class_weights
        self.transforms = {"train": train_transform, "val": eval_transform, "test": eval_transform}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers
        self.crop_size, self.mask_fill, self.check = crop_size, mask_fill, check
        self.root, self.options = root, options
        self.datasets: dict[str, Dataset] = {}
        self._train_sampler: EpochSampler | None = None

    def make_dataset(self, split: str, transform: Callable[..., Any] | None) -> Dataset:
        """A fresh, unchecked dataset of one split with ``transform`` (e.g. None for checks)."""
        if split not in self.split_args:
            raise ConfigError(
                f"data.splits has no '{split}' split; it has {', '.join(self.split_args) or 'none'}"
            )
        args = dict(self.split_args[split])
        factory = self.dataset_factory
        for name in DATA_FACTS:
            if name not in args and not _given(factory, name) and _accepts(factory, name):
                args[name] = getattr(self, name)
        length = None
        if "length" in args and not _accepts(self.dataset_factory, "length"):
            length = args.pop("length")
        dataset = self.dataset_factory(**args, transform=transform)
        if length is not None:
            if hasattr(dataset, "pairs"):
                dataset.pairs = dataset.pairs[:length]
            else:
                dataset = Subset(dataset, range(min(length, len(dataset))))
        return dataset

    def build(self, split: str) -> Dataset:
        """The dataset of one split, built once, checked (``check``) and cached."""
        if split not in self.datasets:
            dataset = self.make_dataset(split, self.transforms.get(split))
            if len(dataset) == 0:
                length = self.split_args[split].get("length")
                where = f" (data.splits.{split}.length={length})" if length == 0 else ""
                raise ConfigError(f"the {split} split of data is empty{where}")
            verify(dataset, self.check, split=split)
            self.datasets[split] = dataset
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage or "fit", ()):
            self.build(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        options: dict[str, Any] = {
            "batch_size": self.batch_size if split == "train" else self.eval_batch_size,
            "drop_last": shuffle and len(self.build(split)) > self.batch_size,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
            "collate_fn": PadCollate(self.mask_fill),
        }
        if not shuffle:
            return DataLoader(self.build(split), shuffle=False, **options)
        # the training loader resumes inside an epoch and replays it (litseg.data.resumable)
        dataset = self.build(split)
        trainer = self.trainer
        seed = self._train_seed()
        sampler = EpochSampler(
            dataset,
            seed=seed,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )
        self._train_sampler = sampler
        generator = torch.Generator().manual_seed(seed % SEED_SPACE)  # worker seeds, not global
        return ResumableLoader(
            SeededSamples(dataset), sampler=sampler, generator=generator, **options
        )

    def _train_seed(self) -> int:
        """The training data's seed: the run's seed (``seed_everything``), kept for the run
        (a resume replaces it with the checkpoint's); without one, drawn once and shared by
        every process."""
        previous = self._train_sampler
        if previous is not None and previous.restored:
            return previous.seed
        env = os.environ.get("PL_GLOBAL_SEED", "")
        if env.lstrip("-").isdigit():
            return int(env)
        if previous is not None:
            return previous.seed
        seed = random.SystemRandom().randrange(2**32)
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            seed = trainer.strategy.broadcast(seed)
        return seed

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
