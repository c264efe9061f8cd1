"""False-negative denoising with a cross-encoder teacher: pure functions over arrays.

A retrieved "negative" that a stronger model (a cross-encoder) scores as relevant
is likely an unlabelled positive. RocketQA drops such candidates from the
negatives (and may add them as positives); NV-Retriever computes its positive-aware
thresholds with the better model's scores.

Shapes: ``teacher_scores float32[n, k]`` (logits, NaN for empty slots),
``positive_ref float32[n]`` (each query's reference positive logit).

References:
    Qu et al., "RocketQA: An Optimized Training Approach to Dense Passage Retrieval
    for Open-Domain Question Answering", NAACL 2021.
    Moreira et al., "NV-Retriever: Improving text embedding models with effective
    hard-negative mining", 2024.
"""

from __future__ import annotations

import numpy as np

from hardneg.candidates import EMPTY
from hardneg.choices import DENOISE_RULES, DenoiseRule


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, numerically stable for large ``|x|``; NaN stays NaN."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def describe_rule(rule: DenoiseRule, threshold: float) -> str:
    """The rule as a sentence, e.g. ``teacher logit > 2.0``."""
    if rule == "absolute":
        return f"teacher logit > {threshold:g}"
    if rule == "relative":
        return f"teacher logit > positive's teacher logit - {threshold:g}"
    return f"sigmoid(teacher logit) > {threshold:g}"


def teacher_says_relevant(
    teacher_scores: np.ndarray, positive_ref: np.ndarray, rule: DenoiseRule, threshold: float
) -> np.ndarray:
    """Candidates the teacher calls relevant (likely false negatives), ``bool[n, k]``.

    Rules:
        ``absolute``: ``teacher > threshold``.
        ``relative``: ``teacher > positive_ref - threshold`` (within ``threshold``
        logits of the query's positive, or above it; ``threshold=0`` flags candidates
        the teacher ranks above the positive).
        ``probability``: ``sigmoid(teacher) > threshold``.

    NaN scores (empty slots, or a query without a positive score under ``relative``)
    are never flagged.
    """
    with np.errstate(invalid="ignore"):
        if rule == "absolute":
            hit = teacher_scores > threshold
        elif rule == "relative":
            hit = teacher_scores > (positive_ref - threshold)[:, None]
        elif rule == "probability":
            hit = sigmoid(teacher_scores) > threshold
        else:
            raise ValueError(f"unknown denoise rule {rule!r}; choose one of {', '.join(DENOISE_RULES)}")
    return hit & ~np.isnan(teacher_scores)


def flagged_lists(doc_ids: np.ndarray, flagged: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pack each row's flagged candidates to the left, in ranking order.

    Returns:
        ``int32[n, d]`` doc ids (``-1``-padded, ``d >= 1`` the widest row) and, for each
        array in ``values``, its ``float32[n, d]`` values at those slots (NaN-padded).
    """
    width = max(int(flagged.sum(axis=1).max()) if flagged.size else 0, 1)
    order = np.argsort(~flagged, axis=1, kind="stable")[:, :width]
    taken = np.take_along_axis(flagged, order, axis=1)
    if order.shape[1] < width:  # k smaller than 1
        pad = width - order.shape[1]
        order = np.pad(order, ((0, 0), (0, pad)))
        taken = np.pad(taken, ((0, 0), (0, pad)))
    docs = np.where(taken, np.take_along_axis(doc_ids, order, axis=1), EMPTY).astype(np.int32)
    out = [docs]
    for v in values:
        out.append(np.where(taken, np.take_along_axis(v, order, axis=1), np.nan).astype(np.float32))
    return tuple(out)


def false_negative_rates(
    source_ranks: dict[str, np.ndarray],
    is_positive: np.ndarray,
    relevant: np.ndarray,
    top: int = 10,
) -> dict[str, dict[str, float | int]]:
    """Per retriever, the share of its top-``top`` non-positive candidates the teacher calls relevant.

    An estimate of the false negatives a naive "take the top-k" miner would train on.

    Args:
        source_ranks: per source ``int32[n, k]`` rank in that source's list, ``-1`` if absent.
        is_positive: ``bool[n, k]`` candidates that are labelled positives.
        relevant: ``bool[n, k]`` candidates the teacher calls relevant.
        top: how many non-positive candidates per query and source to look at.

    Returns:
        ``{source: {"rate": flagged / looked_at, "flagged": int, "candidates": int,
        "queries_with_any": int}}``.
    """
    out: dict[str, dict[str, float | int]] = {}
    for name, ranks in source_ranks.items():
        present = (ranks >= 0) & ~is_positive
        # order each row by that source's rank, then keep its first `top` non-positives
        key = np.where(present, ranks, np.iinfo(np.int32).max)
        order = np.argsort(key, axis=1, kind="stable")
        in_order = np.take_along_axis(present, order, axis=1)
        within = in_order & (np.cumsum(in_order, axis=1) <= top)
        looked = np.zeros_like(present)
        np.put_along_axis(looked, order, within, axis=1)
        hits = looked & relevant
        n_looked = int(looked.sum())
        out[name] = {
            "rate": round(float(hits.sum()) / n_looked, 6) if n_looked else 0.0,
            "flagged": int(hits.sum()),
            "candidates": n_looked,
            "queries_with_any": int(hits.any(axis=1).sum()),
        }
    return out
