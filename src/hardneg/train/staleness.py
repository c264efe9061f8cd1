"""Staleness: how far the negatives in use lag behind the model being trained.

Measured at every refresh, before the swap: the share of each query's negatives in use
that the current model still ranks in its top k. Negatives are compared by text key,
so a copy of a passage under another id counts as the same negative, and nothing maps
every passage of the corpus to its row.
"""

from __future__ import annotations

import numpy as np

from hardneg.candidates import EMPTY


def overlap_at_k(in_use: list[np.ndarray], top: list[np.ndarray]) -> float:
    """Mean fraction of each query's negatives in use found in its current top-k.

    Args:
        in_use: per query, text keys (:func:`~hardneg.text.text_keys`) of the negatives in use
            (may be empty: skipped).
        top: per query, text keys of the current model's top-k candidates.

    Returns:
        The mean over queries with negatives; NaN when none has any. ``1 - overlap`` is
        the staleness: how far the training negatives lag behind the model.
    """
    fractions = [np.isin(keys, top[q]).mean() for q, keys in enumerate(in_use) if len(keys)]
    return float(np.mean(fractions)) if fractions else float("nan")


def top_k_keys(doc_ids: np.ndarray, passage_keys: np.ndarray) -> list[np.ndarray]:
    """Per query, the text keys of its candidates (empty slots left out), read from the corpus's
    :attr:`~hardneg.data.Corpus.passage_keys` (hashed once per corpus, not once per refresh)."""
    return [passage_keys[row[row != EMPTY]] for row in np.asarray(doc_ids, np.int64)]
