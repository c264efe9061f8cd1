"""Where the loss gradient goes: the share each kind of negative carries, measured during training.

Under the softmax (InfoNCE) losses ``mnrl`` and ``cached-mnrl``, query ``i``'s loss
is ``-log p_i,pos`` with ``p_i = softmax(scale * s_i)`` over its row of the batch's
score matrix ``s``. The gradient on the logit of candidate ``j`` is ``p_ij - [j = pos]``:
each negative is pushed down with its softmax probability, and the positive is pulled
up with ``1 - p_i,pos``, the sum of those pushes. So the share of the gradient a class
of negatives carries is exactly its summed probability over the batch, divided by the
summed ``1 - p_pos`` -- no extra forward or backward pass, just a softmax of the matrix
the loss already computed.

The classes of a row's candidates (sentence-transformers' layout: column block 0 holds
the batch's positives, block ``r`` every example's ``r``-th hard negative):

- ``hard_1`` .. ``hard_k``: the query's own mined negatives by rank;
- ``padding``: its own negatives that are random documents filling up a short query
  (``if_short="pad"``);
- ``in_batch``: every other example's positive and negatives.

:class:`GradientShareLog` taps the loss's similarity function at sampled steps (and the
first step after each refresh) and writes one JSON line per measured step.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.neighbourhood import padding_texts

logger = logging.getLogger(__name__)

SHARE_LOSSES = ("mnrl", "cached-mnrl")
LOG_FILE = "gradient_shares.jsonl"


def candidate_classes(batch_size: int, padded: np.ndarray) -> np.ndarray:
    """``int[B, B * (1 + k)]`` class of each score: 0 positive, ``r`` (1..k) own hard negative of rank
    ``r``, ``k + 1`` own padding negative, ``k + 2`` in-batch (another example's text).

    Args:
        batch_size: ``B``.
        padded: ``bool[B, k]``, True where example ``b``'s negative ``r`` is padding.
    """
    k = padded.shape[1]
    classes = np.full((batch_size, batch_size * (1 + k)), k + 2, dtype=np.int64)
    rows = np.arange(batch_size)
    classes[rows, rows] = 0
    for r in range(1, k + 1):
        classes[rows, r * batch_size + rows] = np.where(padded[:, r - 1], k + 1, r)
    return classes


def gradient_shares(scores: np.ndarray, scale: float, padded: np.ndarray) -> dict[str, Any]:
    """Share of the negatives' gradient each class carries in one batch (module docstring).

    Args:
        scores: ``float[B, B * (1 + k)]`` similarities of each query with every candidate
            (unscaled, as the loss's similarity function returns them).
        scale: the loss's inverse temperature.
        padded: ``bool[B, k]`` which own negatives are padding.

    Returns:
        ``shares`` (class name -> fraction of the summed negative probability; they sum to 1),
        ``positive_prob`` (mean softmax probability of the positive) and ``positive_grad``
        (mean ``1 - p_pos``: the size of each query's pull, equal to its pushes' sum).
    """
    batch_size, k = padded.shape
    if scores.shape != (batch_size, batch_size * (1 + k)):
        raise ValueError(f"scores of shape {scores.shape} do not fit {batch_size} examples with {k} negatives")
    logits = scale * scores.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    classes = candidate_classes(batch_size, padded)
    mass = np.bincount(classes.ravel(), weights=probs.ravel(), minlength=k + 3)
    pushed = mass[1:].sum()
    names = [f"hard_{r}" for r in range(1, k + 1)] + ["padding", "in_batch"]
    shares = {name: float(m / pushed) if pushed > 0 else 0.0 for name, m in zip(names, mass[1:])}
    positive = np.diagonal(probs[:, :batch_size])
    return {"shares": shares, "positive_prob": float(positive.mean()), "positive_grad": float((1 - positive).mean())}


class GradientShareLog:
    """Measures :func:`gradient_shares` on the batches the loss sees, every ``every`` steps.

    Wire it in three places: :meth:`collated` from the collator (the rows of each batch,
    in the order the loss will see them), :meth:`begin_step` before each loss call, and
    :meth:`wrap` around the loss's similarity function.
    """

    def __init__(self, pool, every: int, scale: float, path: str | Path | None = None,
                 padding: dict[int, set[str]] | None = None, padding_after_refresh=None) -> None:
        self.pool, self.every, self.scale = pool, every, scale
        self.path = Path(path) if path is not None else None
        self.padding = padding or {}
        self.padding_after_refresh = padding_after_refresh  # () -> padding of the swapped-in negatives, or None
        self.entries: list[dict[str, Any]] = []
        self._queue: deque[list[int]] = deque()
        self._armed: dict[str, Any] | None = None
        self._chunks: list[np.ndarray] = []
        self._version = pool.version

    def collated(self, rows: list[int]) -> None:
        self._queue.append(list(rows))

    def begin_step(self, step: int, max_steps: int | None = None) -> None:
        """Called before the loss of optimizer step ``step + 1`` (of ``max_steps``); arms a measurement when it
        is due: every ``every`` steps from the first, the last step, and the first step after a refresh."""
        rows = self._queue.popleft() if self._queue else None
        refreshed = self.pool.version != self._version
        self._version = self.pool.version
        if refreshed and self.padding_after_refresh is not None:
            self.padding = self.padding_after_refresh() or {}
        due = step % self.every == 0 or step + 1 == max_steps or refreshed
        self._armed = {"step": step + 1, "rows": rows, "after_refresh": refreshed} if due and rows else None
        self._chunks = []

    def wrap(self, similarity_fct):
        """``similarity_fct`` that also hands the query-to-candidate scores to this log when armed."""

        def similarity(a, b):
            out = similarity_fct(a, b)
            if self._armed is not None:
                self._take(out)
            return out

        return similarity

    def _take(self, scores) -> None:
        rows = self._armed["rows"]
        k = self.pool.num_negatives
        if scores.shape[-1] != len(rows) * (1 + k):
            return  # not the query-to-candidate matrix of this batch
        self._chunks.append(scores.detach().float().cpu().numpy())
        if sum(len(c) for c in self._chunks) < len(rows):
            return  # a cached loss computes the matrix in chunks of queries
        padded = np.array([[text in self.padding.get(int(self.pool.query_rows[i]), ()) for text in self.pool.negatives[i]]
                           for i in rows], dtype=bool).reshape(len(rows), k)
        entry = {"step": self._armed["step"], "negatives_version": self.pool.version,
                 "after_refresh": self._armed["after_refresh"],
                 **gradient_shares(np.concatenate(self._chunks), self.scale, padded)}
        self._armed, self._chunks = None, []
        self.entries.append(entry)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")



def share_log(config, loss, pool, output_dir: Path, padding, refresher, data, *, fresh: bool):
    """The :class:`GradientShareLog` of a :func:`hardneg.train.trainer.train` run, wired into ``loss``
    (None when ``config`` turns it off or the loss is not a softmax over the batch)."""
    if config.log_gradient_every is None:
        return None
    if config.loss.name not in SHARE_LOSSES:
        logger.info("gradient shares are measured for %s only; %s trains without them", "/".join(SHARE_LOSSES),
                    config.loss.name)
        return None
    path = Path(output_dir) / LOG_FILE
    if fresh:
        path.unlink(missing_ok=True)

    def after_refresh():
        selection = getattr(refresher, "last_selection", None)
        return padding_texts(selection, data.corpus.passages) if selection is not None else None

    log = GradientShareLog(pool, config.log_gradient_every, float(loss.scale), path, padding,
                           after_refresh if refresher is not None else None)
    loss.similarity_fct = log.wrap(loss.similarity_fct)
    return log
