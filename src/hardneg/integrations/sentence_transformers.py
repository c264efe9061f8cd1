"""hardneg's mined negatives and ANCE refresh in your own ``SentenceTransformerTrainer`` script.

Three lines join an existing script: mine, hand the trainer the dataset, attach::

    from hardneg.integrations.sentence_transformers import MinedNegatives

    negatives = MinedNegatives.mine(miner, data)      # anchor, positive, negative_1..k (+ hardneg_row)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=negatives.dataset, loss=loss)
    negatives.attach(trainer, refresh_every=200)      # re-mine with the model being trained every 200 steps
    trainer.train()

``miner`` is a :class:`hardneg.mine.Miner` whose dense encoder wraps the model being
trained (``SentenceTransformerEncoder(model)``), so a refresh mines with the current
weights; ``data`` is the :class:`hardneg.data.RetrievalData` it mines for (from a
pairs dataset: :func:`hardneg.data.from_hf_dataset`). The dataset's rows carry their
example index; :meth:`MinedNegatives.attach` wraps the trainer's collator so each batch
reads the negatives in use at that moment, and adds :class:`HardNegativeRefresh`, which
swaps them every ``refresh_every`` steps (:class:`hardneg.train.refresh.Refresher`:
the same re-mining, staleness and logging as ``hardneg train --refresh-every``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hardneg.errors import HardnegError
from hardneg.train.pool import NegativePool, pool_from_selection
from hardneg.train.refresh import RefreshConfig, Refresher
from hardneg.train.refresh_callback import check_miner_follows, make_refresh_callback
from hardneg.train.trainer import ROW_COLUMN, pool_collator, pool_dataset


class HardNegativeRefresh(TrainerCallback):
    """A ``transformers.TrainerCallback`` that re-mines the negatives every ``every`` steps (ANCE).

    It runs ``refresher`` (which swaps the negatives of its pool) and saves the
    negatives in use with each checkpoint; ``history`` holds one entry per refresh.
    """

    def __init__(self, refresher: Refresher, every: int) -> None:
        self.refresher = refresher
        self._callback = make_refresh_callback(refresher, refresher.pool, every, eval_at_start=False)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.refresher.history

    def on_train_begin(self, args, state, control, **kwargs):
        return self._callback.on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        return self._callback.on_step_end(args, state, control, **kwargs)

    def on_save(self, args, state, control, **kwargs):
        return self._callback.on_save(args, state, control, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        return self._callback.on_train_end(args, state, control, **kwargs)


class MinedNegatives:
    """Mined training examples and their swappable negatives, ready for a sentence-transformers trainer.

    Args:
        pool: the examples and the negatives in use.
        miner: the miner the negatives came from (needed to refresh).
        data: the data it mined for (needed to refresh).
        candidates: the candidates the negatives were selected from: a pool-scope refresh (the
            default :class:`~hardneg.train.refresh.RefreshConfig`) re-encodes their top documents;
            without them the first refresh is full.
    """

    def __init__(self, pool: NegativePool, *, miner=None, data=None, candidates=None) -> None:
        self.pool, self.miner, self.data, self.candidates = pool, miner, data, candidates
        self._dataset = None

    @classmethod
    def mine(cls, miner, data, num_negatives: int | None = None) -> MinedNegatives:
        """Mine ``data`` with ``miner``; one example per (query, positive) with its first ``num_negatives``."""
        result = miner.mine(data)
        return cls(pool_from_selection(data, result.selection, num_negatives), miner=miner, data=data,
                   candidates=result.candidates)

    @property
    def dataset(self):
        """A ``datasets.Dataset``: ``anchor``, ``positive``, ``negative_1..k`` and the example index
        ``hardneg_row``, which the collator of :meth:`attach` replaces with the negatives in use."""
        if self._dataset is None:
            self._dataset = pool_dataset(self.pool)
        return self._dataset

    def collator(self, base):
        """``base`` (the trainer's collator) reading each batch's negatives from the pool at collate time."""
        return pool_collator(self.pool, base)

    def refresh_callback(self, every: int, *, staleness_k: int = 10,
                         log_path: str | Path | None = None) -> HardNegativeRefresh:
        """A :class:`HardNegativeRefresh` re-mining with this object's miner every ``every`` steps."""
        if self.miner is None or self.data is None:
            raise HardnegError("Refreshing needs the miner and data the negatives came from: build with "
                               "MinedNegatives.mine(miner, data).")
        refresher = Refresher(self.miner, self.data, self.pool, RefreshConfig(every=every, staleness_k=staleness_k),
                              log_path=log_path, candidates=self.candidates)
        return HardNegativeRefresh(refresher, every)

    def attach(self, trainer, refresh_every: int | None = None, *, staleness_k: int = 10,
               log_path: str | Path | None = None) -> HardNegativeRefresh | None:
        """Make ``trainer`` (built with ``train_dataset=self.dataset``) train on these negatives, re-mined
        every ``refresh_every`` steps when given; returns the refresh callback (None without refresh)."""
        columns = getattr(trainer.train_dataset, "column_names", None) or []
        if ROW_COLUMN not in columns:
            raise HardnegError(f"The trainer's train_dataset has no {ROW_COLUMN} column: build the trainer with "
                               "train_dataset=negatives.dataset before attaching.")
        callback = None
        if refresh_every is not None:
            callback = self.refresh_callback(refresh_every, staleness_k=staleness_k, log_path=log_path)
            check_miner_follows(self.miner, trainer.model)
        trainer.data_collator = self.collator(trainer.data_collator)
        if callback is not None:
            trainer.add_callback(callback)
        return callback
