"""Sampling negatives from the candidates that survived the filters.

Weighted sampling without replacement uses the Gumbel-top-k trick, so one seeded
generator draws all rows at once and equal seeds give equal output.
"""

from __future__ import annotations

import numpy as np


def take_top(alive: np.ndarray, n: int) -> np.ndarray:
    """Column indices of the first ``n`` surviving candidates per row, ``-1``-padded.

    Returns:
        ``int64[rows, n]`` in ranking order.
    """
    # Stable argsort on "dead" (0 alive, 1 dead) keeps survivors in ranking order.
    order = np.argsort(~alive, axis=1, kind="stable")[:, :n]
    taken = np.take_along_axis(alive, order, axis=1)
    return np.where(taken, order, -1)


def gumbel_top(alive: np.ndarray, log_weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sample ``n`` surviving columns per row without replacement, with P ∝ exp(log_weights).

    Returns:
        ``int64[rows, n]`` chosen columns re-sorted into ranking order, ``-1``-padded
        where a row has fewer than ``n`` survivors.
    """
    gumbel = rng.gumbel(size=alive.shape)
    keys = np.where(alive, log_weights + gumbel, -np.inf)
    chosen = np.argsort(-keys, axis=1, kind="stable")[:, :n]
    valid = np.take_along_axis(alive, chosen, axis=1)
    chosen = np.where(valid, chosen, np.iinfo(np.int64).max)
    chosen.sort(axis=1)
    return np.where(chosen == np.iinfo(np.int64).max, -1, chosen)


def simans_log_weights(scores: np.ndarray, positive_ref: np.ndarray, a: float, b: float) -> np.ndarray:
    """SimANS: ``log p = -a * (score - positive_score - b) ** 2``.

    References:
        Zhou et al., "SimANS: Simple Ambiguous Negatives Sampling for Dense Text
        Retrieval", EMNLP 2022.
    """
    return -a * (scores - positive_ref[:, None] - b) ** 2


def pad_rows(
    chosen_docs: list[np.ndarray],
    forbidden_keys: list[np.ndarray],
    keys: np.ndarray,
    n: int,
    rng: np.random.Generator,
    max_tries: int = 50,
) -> list[np.ndarray]:
    """Fill short rows with uniformly random documents.

    A padding document is never a positive, never shares a (normalised) text with a
    positive or with a document already chosen for that row.

    Args:
        chosen_docs: per short row, the documents chosen so far.
        forbidden_keys: per short row, text keys that may not appear (positives').
        keys: ``int64[n_docs]`` text keys of the corpus.
        n: wanted row length.

    Returns:
        The padded documents per row (only the added ones). A row may stay short only
        when the corpus has too few distinct texts.
    """
    n_docs = len(keys)
    added: list[np.ndarray] = []
    for docs, forbidden in zip(chosen_docs, forbidden_keys):
        seen = set(keys[docs].tolist()) | set(forbidden.tolist())
        extra: list[int] = []
        for _ in range(max_tries):
            need = n - len(docs) - len(extra)
            if need <= 0:
                break
            for doc in rng.integers(0, n_docs, size=2 * need).tolist():
                key = int(keys[doc])
                if key not in seen and len(extra) < n - len(docs):
                    seen.add(key)
                    extra.append(doc)
        added.append(np.asarray(extra, dtype=np.int32))
    return added
