"""Candidate filters: pure functions from candidate arrays to boolean masks.

Each returns ``bool[n, k]``, True where a candidate *fails* the rule (is dropped).
Shapes: ``doc_ids int32[n, k]``, ``scores float32[n, k]``.
"""

from __future__ import annotations

import numpy as np

from hardneg.candidates import EMPTY


def is_positive(doc_ids: np.ndarray, positives: tuple[np.ndarray, ...]) -> np.ndarray:
    """Candidates that are one of their query's positives (by document id)."""
    width = max((len(p) for p in positives), default=0)
    padded = np.full((len(positives), max(width, 1)), EMPTY - 1, dtype=np.int64)
    for row, pos in enumerate(positives):
        padded[row, : len(pos)] = pos
    # (n, k, 1) == (n, 1, p) -> (n, k, p)
    return (doc_ids[:, :, None] == padded[:, None, :]).any(axis=2)


def has_positive_text(doc_ids: np.ndarray, positives: tuple[np.ndarray, ...], keys: np.ndarray) -> np.ndarray:
    """Candidates whose normalised text equals one of their query's positives' texts.

    Args:
        keys: ``int64[n_docs]`` text key per corpus row (:func:`hardneg.text.text_keys`).
    """
    candidate_keys = np.where(doc_ids == EMPTY, 0, keys[np.maximum(doc_ids, 0)])
    positive_keys = tuple(keys[p] for p in positives)
    hit = is_positive(candidate_keys, positive_keys)
    return hit & (doc_ids != EMPTY)


def repeats_earlier_text(doc_ids: np.ndarray, alive: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Candidates whose text repeats that of an earlier surviving candidate in the same row."""
    dropped = np.zeros(doc_ids.shape, dtype=bool)
    candidate_keys = keys[np.maximum(doc_ids, 0)]
    for row in range(doc_ids.shape[0]):
        cols = np.flatnonzero(alive[row])
        if len(cols) < 2:
            continue
        _, first = np.unique(candidate_keys[row, cols], return_index=True)
        repeat = np.ones(len(cols), dtype=bool)
        repeat[first] = False
        dropped[row, cols[repeat]] = True
    return dropped


def outside_rank_window(alive: np.ndarray, range_min: int, range_max: int | None) -> np.ndarray:
    """Candidates outside ``[range_min, range_max)`` in the ranking of surviving candidates.

    Ranks count only candidates still alive (positives and duplicates removed), so
    ``range_min=5`` skips the five best-ranked non-positive documents.
    """
    rank = np.cumsum(alive, axis=1) - 1
    inside = rank >= range_min
    if range_max is not None:
        inside &= rank < range_max
    return alive & ~inside


def above_max_score(scores: np.ndarray, max_score: float) -> np.ndarray:
    """Candidates scoring strictly above ``max_score``."""
    return scores > max_score


def below_min_score(scores: np.ndarray, min_score: float) -> np.ndarray:
    """Candidates scoring strictly below ``min_score``."""
    return scores < min_score


def reference_positive_score(positive_scores: np.ndarray) -> np.ndarray:
    """Per query, the lowest positive score (the conservative reference for margins).

    ``positive_scores`` is NaN-padded ``float32[n, p]``; the result is ``float32[n]``.
    """
    masked = np.where(np.isnan(positive_scores), np.inf, positive_scores)
    out = masked.min(axis=1)
    return np.where(np.isinf(out), np.nan, out).astype(np.float32)


def within_absolute_margin(scores: np.ndarray, positive_ref: np.ndarray, margin: float) -> np.ndarray:
    """TopK-MarginPos: candidates with ``score + margin > positive_score``."""
    return scores + margin > positive_ref[:, None]


def within_relative_margin(scores: np.ndarray, positive_ref: np.ndarray, margin: float) -> np.ndarray:
    """TopK-PercPos: candidates with ``score > positive_score - |positive_score| * margin``.

    Subtracting ``|positive| * margin`` (rather than multiplying by ``1 - margin``)
    keeps the threshold below the positive for negative scores too.
    """
    threshold = positive_ref - np.abs(positive_ref) * margin
    return scores > threshold[:, None]
