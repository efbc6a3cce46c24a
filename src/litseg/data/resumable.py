"""A training loader that resumes inside an epoch and replays it exactly.

Three parts, each keeping one promise:

- :class:`EpochSampler` orders an epoch by a permutation that depends only on (seed, epoch),
  shards it across processes as ``DistributedSampler`` does (so Lightning never wraps it),
  and can start at a position inside the epoch.
- :class:`SeededSamples` makes every random draw of one sample's transform depend only on
  (seed, epoch, position in the epoch): the sampler hands it ``(index, (seed, epoch,
  position))`` keys and it gives the albumentations pipeline generators drawn from that key
  alone. In a loader worker it also seeds the worker's global Python, NumPy and torch
  generators from the key (a resumed worker has drawn a different amount from them); in the
  main process those global generators are the run's own stream, which the checkpoint restores.
- :class:`ResumableLoader` counts the batches it has handed to the training loop. Lightning
  stores its ``state_dict`` in the fit loop's part of every checkpoint and gives it back on
  resume (the ``_Stateful`` protocol); the next iteration of that epoch then starts after the
  batches already trained on, with the same samples and augmentations the uninterrupted run
  would have drawn there.

The loader draws nothing from the global random generators (its worker seeds come from its
own ``torch.Generator``), so the model's random stream, which litseg restores from the
checkpoint (``RngStateInCheckpoint``), is the same in a resumed run as in an uninterrupted one.
"""

import logging
import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info

log = logging.getLogger(__name__)

SEED_SPACE = 2**64


SampleKey = tuple[int, int, int]  # (seed, epoch, position in the epoch's order)


def epoch_order(length: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of ``range(length)`` in ``epoch``: a permutation drawn from (seed, epoch)."""
    if not shuffle:
        return np.arange(length)
    return np.random.default_rng([seed % SEED_SPACE, epoch]).permutation(length)


class EpochSampler(DistributedSampler):
    """Per-epoch seeded order, sharded by rank, yielding ``(index, (seed, epoch, position))``.

    Positions ``start + rank, start + rank + num_replicas, ...`` of the epoch's order go to
    this rank (the order is padded to a multiple of ``num_replicas`` by repeating its start,
    as ``DistributedSampler`` does). ``start`` counts positions of the whole epoch already
    trained on; :class:`ResumableLoader` sets it when it resumes, and it is 0 otherwise.
    ``len()`` is always the whole epoch's share, so Lightning's batch counts stay those of an
    uninterrupted epoch.

    Args:
        dataset: the (sized) training dataset.
        seed: base seed of orders and per-sample randomness.
        num_replicas, rank: the process group's size and this process's rank.
        shuffle: permute each epoch (False: dataset order, still seeded per sample).
    """

    def __init__(
        self,
        dataset: Sized,
        seed: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        self.start = 0
        self.restored = False  # the seed came from a checkpoint

    def __iter__(self) -> Iterator[tuple[int, SampleKey]]:  # type: ignore[override]
        order = epoch_order(len(self.dataset), self.seed, self.epoch, self.shuffle)  # type: ignore[arg-type]
        if self.total_size > len(order):
            order = np.resize(order, self.total_size)  # repeats the start, as DistributedSampler
        for position in range(self.start + self.rank, self.total_size, self.num_replicas):
            yield int(order[position]), (self.seed % SEED_SPACE, self.epoch, position)


def _random_parts(dataset: Any) -> list[Any]:
    """The albumentations pipelines (objects with ``set_random_state``) of a dataset's
    transform, looking through wrappers such as ``Subset`` (``.dataset``)."""
    seen = 0
    while dataset is not None and seen < 8:
        transform = getattr(dataset, "transform", None)
        if transform is not None:
            parts = [transform, getattr(transform, "compose", None)]
            return [p for p in parts if callable(getattr(p, "set_random_state", None))]
        dataset, seen = getattr(dataset, "dataset", None), seen + 1
    return []


def seed_sample(key: SampleKey, pipelines: list[Any]) -> None:
    """Give ``pipelines`` random generators drawn from ``key`` alone; in a loader worker, seed
    its global Python, NumPy and torch (CPU) generators from ``key`` too."""
    generator = np.random.default_rng(key)
    seed = int(generator.integers(2**32))
    for pipeline in pipelines:
        pipeline.set_random_state(generator, random.Random(seed))
    if get_worker_info() is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)


class SeededSamples(Dataset):
    """A dataset view whose items, fetched by ``(index, key)``, draw their random transform
    from ``key`` only (:func:`seed_sample`); a plain index fetches the item as it is."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._pipelines = _random_parts(dataset)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, SampleKey]) -> Any:
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, sample = key
        seed_sample(sample, self._pipelines)
        return self.dataset[index]


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler` that resumes inside an epoch.

    ``state_dict()`` holds the epoch, the batches of it handed out so far and the seed;
    ``load_state_dict()`` makes the next iteration of that epoch start after those batches.
    Iteration is lazy (nothing is fetched before the first ``next``), so Lightning's
    ``set_epoch`` always comes first. Lightning saves and restores this state itself.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch = 0
        self._delivered = 0
        self._resume: tuple[int, int] | None = None

    def _sampler(self) -> EpochSampler | None:
        return self.sampler if isinstance(self.sampler, EpochSampler) else None

    def _per_batch(self) -> int:
        """Positions of the epoch's order that one batch on every rank takes."""
        sampler = self._sampler()
        return (self.batch_size or 1) * (sampler.num_replicas if sampler else 1)

    def __iter__(self) -> Iterator[Any]:
        return self._deliver()

    def _deliver(self) -> Iterator[Any]:
        sampler = self._sampler()
        epoch = sampler.epoch if sampler is not None else 0
        done = 0
        if self._resume is not None and self._resume[0] == epoch and sampler is not None:
            done = self._resume[1] if 0 < self._resume[1] < len(self) else 0
            if done:
                log.info("Resuming epoch %d of the training data after batch %d", epoch, done)
        self._resume = None
        if sampler is not None:
            sampler.start = done * self._per_batch()
        self._epoch, self._delivered = epoch, done
        for batch in super().__iter__():
            self._delivered += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where the training data stands: epoch, batches handed out in it, seed, sizes."""
        sampler = self._sampler()
        if sampler is None:
            return {}
        return {
            "epoch": self._epoch,
            "batches": self._delivered,
            "seed": sampler.seed,
            "batch_size": self.batch_size,
            "num_replicas": sampler.num_replicas,
            "length": len(sampler.dataset),  # type: ignore[arg-type]
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a stored state (a checkpoint's, so checked as data, never trusted)."""
        sampler = self._sampler()
        if sampler is None or not state_dict:
            return
        fields = ("epoch", "batches", "seed", "batch_size", "num_replicas", "length")
        values = [state_dict.get(f) for f in fields]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            log.warning("The checkpoint's training-data state is unreadable; the epoch restarts")
            return
        epoch, batches, seed, batch_size, num_replicas, length = values
        sampler.seed, sampler.restored = seed, True
        same = (length, batch_size, num_replicas) == (
            len(sampler.dataset),  # type: ignore[arg-type]
            self.batch_size,
            sampler.num_replicas,
        )
        if not same and batches:
            log.warning(
                "The training data, batch size or process count changed since the checkpoint; "
                "the interrupted epoch %d starts again from its first batch",
                epoch,
            )
            batches = 0
        self._resume = (epoch, batches)
