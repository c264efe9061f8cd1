"""Batches that are safe for in-batch negatives.

Two rules hold in every batch:

1. no text occurs twice (queries, positives and hard negatives alike), so no
   example is contrasted against a copy of itself;
2. no text of one example is a positive of another example's query, so a document
   that is relevant to a query never serves as its in-batch or hard negative (two
   queries that share a positive never meet).

Batches are planned lazily, one at a time, from the negatives in use at that
moment: after an ANCE refresh swaps them, the next batch obeys the rules for the
new ones.

The rules can leave examples out of an epoch (repeated negatives make examples
clash), so an epoch has fewer than ``len(pool) // batch_size`` batches. The
trainer's step count, learning-rate schedule and ``max_steps`` follow the
sampler's length, so the torch sampler counts the batches of a dry-run plan once
and every epoch yields exactly that many (:func:`exact_batches`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from hardneg.errors import HardnegError
from hardneg.train.topics import topic_order

logger = logging.getLogger(__name__)


def compatible(keys: np.ndarray, forbidden: np.ndarray, batch_keys: set[int], batch_forbidden: set[int]) -> bool:
    """Whether an example with text ``keys`` and query positives ``forbidden`` may join a batch.

    Args:
        keys: ``int64`` text keys of the example (query, positive, negatives).
        forbidden: ``int64`` text keys of all positives of the example's query.
        batch_keys: text keys already in the batch.
        batch_forbidden: positives of the queries already in the batch.
    """
    key_list = keys.tolist()
    if len(set(key_list)) != len(key_list):
        return False
    if batch_keys.intersection(key_list) or batch_forbidden.intersection(key_list):
        return False
    # the example's own positives may not appear as another example's text
    own_positive = set(forbidden.tolist())
    return not own_positive.intersection(batch_keys)


def epoch_order(n: int, rng: np.random.Generator, topics: np.ndarray | None = None) -> np.ndarray:
    """The order in which :func:`iter_batches` visits ``n`` examples: a permutation drawn from ``rng``, or
    with ``topics`` (one label per example) topic by topic (:func:`hardneg.train.topics.topic_order`)."""
    return rng.permutation(n) if topics is None else topic_order(topics, rng)


def iter_batches(pool, batch_size: int, rng: np.random.Generator,
                 topics: np.ndarray | None = None) -> Iterator[list[int]]:
    """Yield full batches of example indices obeying both rules (module docstring).

    Examples are visited in a random order (with ``topics``, one label per example:
    topic by topic, see :func:`hardneg.train.topics.topic_order`); one that conflicts
    with the batch being filled waits for a later batch. Planning is lazy, so each
    batch sees the negatives in ``pool`` at the moment it is drawn. Examples that
    fit no full batch at the end of the epoch are left out of it (at most a few).
    """
    if batch_size < 2:
        raise HardnegError(f"batch_size must be at least 2 for in-batch negatives, got {batch_size}.")
    if topics is not None and len(topics) != len(pool):
        raise HardnegError(f"{len(topics)} topic labels for {len(pool)} training examples; they must align.")
    waiting = epoch_order(len(pool), rng, topics).tolist()
    while len(waiting) >= batch_size:
        batch: list[int] = []
        batch_keys: set[int] = set()
        batch_forbidden: set[int] = set()
        rest: list[int] = []
        for pos, i in enumerate(waiting):
            if len(batch) == batch_size:
                rest.extend(waiting[pos:])
                break
            keys, forbidden = pool.example_keys(i), pool.forbidden_keys(i)
            if compatible(keys, forbidden, batch_keys, batch_forbidden):
                batch.append(i)
                batch_keys.update(keys.tolist())
                batch_forbidden.update(forbidden.tolist())
            else:
                rest.append(i)
        if len(batch) < batch_size:
            logger.info("batch sampler: %d examples fit no further full batch this epoch", len(waiting))
            return
        yield batch
        waiting = rest


def count_batches(pool, batch_size: int, seed: int, topics: np.ndarray | None = None) -> int:
    """How many batches :func:`iter_batches` plans for epoch 0 of ``seed`` with the negatives in use now."""
    return sum(1 for _ in iter_batches(pool, batch_size, np.random.default_rng([seed, 0]), topics))


def exact_batches(pool, batch_size: int, count: int, rng: np.random.Generator,
                  topics: np.ndarray | None = None) -> Iterator[list[int]]:
    """Exactly ``count`` batches of :func:`iter_batches`: its plan cut at ``count``, or topped up from
    fresh passes over the examples when it falls short (only after negatives changed since ``count``
    was planned), so the trainer's schedule always matches what it gets."""
    yielded = 0
    while yielded < count:
        before = yielded
        for batch in iter_batches(pool, batch_size, rng, topics):
            yield batch
            yielded += 1
            if yielded == count:
                return
        if yielded == before:
            raise HardnegError(f"The training examples no longer fill one batch of {batch_size}; lower --batch-size.")
        logger.info("batch sampler: topping up the epoch with %d batches from a new pass", count - yielded)


def violations(pool, batch: list[int]) -> list[str]:
    """Human-readable breaches of the two rules in ``batch`` (empty when it is safe)."""
    found = []
    seen: dict[int, int] = {}
    for i in batch:
        for k in pool.example_keys(i).tolist():
            if k in seen:
                found.append(f"text repeated by examples {seen[k]} and {i}")
            seen[k] = i
    for i in batch:
        own = set(pool.forbidden_keys(i).tolist())
        for j in batch:
            if j != i and own.intersection(pool.example_keys(j).tolist()):
                found.append(f"example {j} carries a positive of example {i}'s query")
    return found


def make_batch_sampler(pool, batch_size: int, seed: int, topics: np.ndarray | None = None):
    """A torch ``BatchSampler`` over ``pool`` for the sentence-transformers trainer (``topics``: see
    :func:`iter_batches`)."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    class PositiveAwareBatchSampler(DefaultBatchSampler):
        """Lazy, rule-keeping batches (see :mod:`hardneg.train.sampler`); reshuffled per epoch; every epoch
        has the length planned at first use."""

        def __init__(self) -> None:
            super().__init__(range(len(pool)), batch_size=batch_size, drop_last=True, seed=seed)
            self.pool = pool
            self._count: int | None = None
            self._epoch = 0
            self._drawn: set[int] = set()  # examples handed out in the epoch under way

        def __iter__(self) -> Iterator[list[int]]:
            self._epoch, self._drawn = self.epoch, set()
            rng = np.random.default_rng([self.seed, self.epoch])
            for batch in exact_batches(self.pool, self.batch_size, len(self), rng, topics):
                self._drawn.update(batch)
                yield batch

        def upcoming(self, batches: int) -> np.ndarray:
            """The examples the next ``batches`` batches will most likely hold: this epoch's order without what
            was handed out, then the next epochs' orders, cut at ``batches`` × batch size. (The order is
            fixed per epoch; which examples a batch takes from it depends on the negatives at that moment,
            so the cut is a prediction, exact up to examples deferred across it.)"""
            want = batches * self.batch_size
            epoch = self.epoch  # set_epoch() may have moved on since the last epoch began: then nothing is drawn
            drawn = self._drawn if epoch == self._epoch else set()
            ahead = [i for i in epoch_order(len(self.pool), np.random.default_rng([self.seed, epoch]), topics).tolist()
                     if i not in drawn]
            while len(ahead) < want:
                epoch += 1
                ahead += epoch_order(len(self.pool), np.random.default_rng([self.seed, epoch]), topics).tolist()
            return np.asarray(ahead[:want], np.int64)

        def __len__(self) -> int:
            if self._count is None:
                self._count = count_batches(self.pool, self.batch_size, self.seed, topics)
                if self._count == 0:
                    raise HardnegError(f"No batch of {self.batch_size} examples without a repeated text can be "
                                       "formed; lower --batch-size or mine more varied negatives.")
            return self._count

    if len(pool) < batch_size:
        raise HardnegError(
            f"{len(pool)} training examples cannot fill one batch of {batch_size}; lower --batch-size or add queries."
        )
    return PositiveAwareBatchSampler()
