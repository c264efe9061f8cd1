"""Exact inner-product search over document shards, with a result that does not depend on the shards.

For corpora whose embeddings do not fit in memory at once (a memory-mapped ``.npy``) or
that are searched piecewise (one shard per worker): each shard is searched exactly on its
own, the shards' candidates are merged by (score descending, document row ascending),
and the merged candidates are scored again by one fixed kernel, :func:`exact_scores`, so
rows and scores are the same bit for bit whatever the shard size.

A shard's own scores (FAISS, BLAS) may differ from another layout's in the last bit, which
could decide a near-tie at the cut; so each shard hands over ``k + slack`` candidates and
the cut to ``k`` is made on the fixed kernel's scores. The result equals the unsharded one
unless more than ``slack`` documents tie (to the last bit) at the k-th place.

Memory: one shard's embeddings and index, the queries, and ``queries x (k + slack)``
candidates; never ``queries x corpus``.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm.auto import tqdm

from hardneg.candidates import EMPTY
from hardneg.retrieve.search import IndexConfig, build_index, order_by_score_then_id, search

logger = logging.getLogger(__name__)

_RESCORE_BYTES = 256 * 2**20  # gathered candidate embeddings per rescoring block


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
        doc_embeddings: ``float32[n_docs, dim]``; an ``np.memmap`` is read one shard at a time.
        query_embeddings: ``float32[n_queries, dim]``.
        k: documents per query.
        shard_size: documents per shard.
        slack: extra candidates each shard hands over (default ``k``).
        block_size: queries per FAISS search call.

    Returns:
        ``int32[n_queries, k]`` document rows (``EMPTY`` where the corpus is smaller) and
        ``float32[n_queries, k]`` scores (NaN there), best first, ties by lower row.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1; got {shard_size}.")
    n_docs = len(doc_embeddings)
    width = min(k + (k if slack is None else slack), n_docs)
    ids = np.full((len(query_embeddings), width), EMPTY, dtype=np.int32)
    scores = np.full((len(query_embeddings), width), np.nan, dtype=np.float32)
    starts = range(0, n_docs, shard_size)
    for start in tqdm(starts, desc="Searching shards", unit="shard", disable=not show_progress):
        shard = np.ascontiguousarray(doc_embeddings[start : start + shard_size], dtype=np.float32)
        shard_ids, shard_scores = search(build_index(shard, IndexConfig()), query_embeddings, width,
                                         block_size=block_size, show_progress=False)
        shard_ids = np.where(shard_ids >= 0, shard_ids + start, EMPTY).astype(np.int32)
        ids, scores = merge_top_k(ids, scores, shard_ids, shard_scores, width)
    scores = exact_scores(query_embeddings, doc_embeddings, ids)
    ids, scores = order_by_score_then_id(ids, scores)
    out_ids = np.full((len(query_embeddings), k), EMPTY, dtype=np.int32)
    out_scores = np.full((len(query_embeddings), k), np.nan, dtype=np.float32)
    keep = min(k, width)
    out_ids[:, :keep], out_scores[:, :keep] = ids[:, :keep], scores[:, :keep]
    return out_ids, out_scores


def merge_top_k(
    ids_a: np.ndarray, scores_a: np.ndarray, ids_b: np.ndarray, scores_b: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``width`` best of two candidate lists by (score descending, row ascending), empties last."""
    ids, scores = order_by_score_then_id(np.concatenate((ids_a, ids_b), 1), np.concatenate((scores_a, scores_b), 1))
    return ids[:, :width], scores[:, :width]


def exact_scores(query_embeddings: np.ndarray, doc_embeddings: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``float32`` inner product of each query with each of its candidate rows (NaN for ``EMPTY``).

    One fixed kernel: an elementwise product and a sum over the last axis, whose order
    depends on the embedding width only, so a (query, document) pair scores the same
    wherever it sits in any array.
    """
    n, width = ids.shape
    dim = query_embeddings.shape[1]
    out = np.full((n, width), np.nan, dtype=np.float32)
    rows = max(1, _RESCORE_BYTES // max(1, width * dim * 4))
    for start in range(0, n, rows):
        block = ids[start : start + rows]
        found = block >= 0
        gathered = np.asarray(doc_embeddings[np.where(found, block, 0).ravel()], dtype=np.float32)
        gathered = gathered.reshape(len(block), width, dim)  # (rows, width, dim)
        queries = np.asarray(query_embeddings[start : start + rows], dtype=np.float32)[:, None, :]
        out[start : start + rows] = np.where(found, (gathered * queries).sum(axis=-1), np.nan)
    return out
