"""Exact inner-product search over document shards, with a result that does not depend on the shards.

For corpora whose embeddings do not fit in memory at once (a memory-mapped ``.npy``, float16
or float32) or that are searched piecewise (one shard per worker): each shard's exact top-k
is found on its own (:func:`~hardneg.retrieve.exact.exact_top_k`: FAISS proposes, one fixed
kernel, :func:`~hardneg.retrieve.exact.exact_scores`, scores), and the shards' lists are
merged by (score descending, document row ascending). The fixed kernel scores a pair the
same bits in any shard, so rows and scores are the same whatever the shard size, and equal
an unsharded flat :func:`~hardneg.retrieve.search.search`.

Memory: one shard's embeddings as float32, twice (the shard and its FAISS index), the
queries, and ``queries x k`` candidates; never ``queries x corpus``.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm.auto import tqdm

from hardneg.candidates import EMPTY
from hardneg.retrieve.exact import exact_scores, exact_top_k, order_by_score_then_id
from hardneg.retrieve.search import IndexConfig, build_index

logger = logging.getLogger(__name__)

__all__ = ["exact_scores", "merge_top_k", "search_sharded"]


def search_sharded(
    doc_embeddings: np.ndarray,
    query_embeddings: np.ndarray,
    k: int,
    *,
    shard_size: int,
    slack: int | None = None,
    block_size: int = 4096,
    show_progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` documents per query by inner product, searched ``shard_size`` documents at a time.

    Args:
        doc_embeddings: ``[n_docs, dim]``, float16 or float32; an ``np.memmap`` is read one shard at a time.
        query_embeddings: ``[n_queries, dim]``.
        k: documents per query.
        shard_size: documents per shard.
        slack: extra proposals per query a shard's first FAISS search asks for (default ``k``).
        block_size: queries per FAISS search call.

    Returns:
        ``int32[n_queries, k]`` document rows (``EMPTY`` where the corpus is smaller) and
        ``float32[n_queries, k]`` scores (NaN there), best first, ties by lower row.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1; got {shard_size}.")
    n_docs = len(doc_embeddings)
    ids = np.full((len(query_embeddings), k), EMPTY, dtype=np.int32)
    scores = np.full((len(query_embeddings), k), np.nan, dtype=np.float32)
    starts = range(0, n_docs, shard_size)
    for start in tqdm(starts, desc="Searching shards", unit="shard", disable=not show_progress or len(starts) < 2):
        shard = np.ascontiguousarray(doc_embeddings[start : start + shard_size], dtype=np.float32)
        shard_ids, shard_scores = exact_top_k(build_index(shard, IndexConfig()), shard, query_embeddings, k,
                                              slack=slack, block_size=block_size,
                                              show_progress=show_progress and len(starts) < 2)
        shard_ids = np.where(shard_ids >= 0, shard_ids + start, EMPTY).astype(np.int32)
        ids, scores = merge_top_k(ids, scores, shard_ids, shard_scores, k)
    return ids, scores


def merge_top_k(
    ids_a: np.ndarray, scores_a: np.ndarray, ids_b: np.ndarray, scores_b: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``width`` best of two candidate lists by (score descending, row ascending), empties last."""
    ids, scores = order_by_score_then_id(np.concatenate((ids_a, ids_b), 1), np.concatenate((scores_a, scores_b), 1))
    return ids[:, :width], scores[:, :width]

