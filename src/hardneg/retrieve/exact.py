"""Exact top-k by inner product, ordered by (score descending, document row ascending) without exception.

FAISS's flat search is exact up to rounding, but it breaks a tie at the k-th place by its
own heap order, so a document tied with the k-th that FAISS left out is never seen again,
and its scores may differ from another layout's in the last bit. Here FAISS only proposes:
each query gets ``k + slack`` of its candidates, every candidate is scored again by one
fixed kernel (:func:`exact_scores`), and the list is cut to ``k`` by (fixed score, row).
Where a document FAISS did not propose could still reach the k-th fixed score (FAISS's
last proposal is within :func:`rounding_margin` of it), that query is searched again with
twice the width, until none could or the whole corpus is proposed.

The result is the exact top-k under :func:`exact_scores`, which scores a (query, document)
pair the same bits wherever the pair sits, so it does not depend on the index's layout.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from hardneg.candidates import EMPTY

# Gathered candidate embeddings per rescoring block. Small blocks stay in cache: rescoring 9,021 queries x 200
# candidates x 384 dims took 0.6 s with 8 MiB blocks, 2-3.4 s with 256 MiB ones, which also added ~0.5 GB to
# the peak (the block and its product). The result is the same bits at any block size.
_RESCORE_BYTES = 8 * 2**20
_UNIT_ROUNDOFF = 2.0**-24  # float32


def order_by_score_then_id(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-sort each row by (score descending, id ascending), misses last: FAISS leaves tie order open."""
    key_scores = np.where(ids >= 0, -scores, np.inf)
    key_ids = np.where(ids >= 0, ids, np.iinfo(np.int64).max)
    order = np.lexsort((key_ids, key_scores), axis=-1)  # row-wise
    return np.take_along_axis(ids, order, 1), np.take_along_axis(scores, order, 1)


def exact_scores(query_embeddings: np.ndarray, doc_embeddings: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``float32`` inner product of each query with each of its candidate rows (NaN for ``EMPTY``).

    One fixed kernel: an elementwise product and a sum over the last axis, whose order
    depends on the embedding width only, so a (query, document) pair scores the same
    wherever it sits in any array. Rows of ``doc_embeddings`` (any float dtype, a memmap
    too) are read as float32.
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


def rounding_margin(query_norms: np.ndarray, max_doc_norm: float, dim: int) -> np.ndarray:
    """How far two float32 computations of one inner product can disagree, per query.

    Each is within ``gamma(dim) * |q| * |d|`` of the true value (``gamma(n) = n u / (1 - n u)``,
    ``u`` float32's unit roundoff; Higham, *Accuracy and Stability of Numerical Algorithms*,
    §3.1), whatever its summation order; two of them, twice that. ``dim + 2`` covers the
    rounded products too.
    """
    nu = (dim + 2) * _UNIT_ROUNDOFF
    return (2 * nu / (1 - nu)) * query_norms.astype(np.float64) * max_doc_norm * 1.01


def exact_top_k(
    index,
    doc_embeddings: np.ndarray,
    query_embeddings: np.ndarray,
    k: int,
    *,
    slack: int | None = None,
    block_size: int = 4096,
    show_progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-``k`` rows of ``doc_embeddings`` per query, FAISS ``index`` (flat, over them) proposing.

    Args:
        index: a FAISS flat inner-product index holding ``doc_embeddings``.
        doc_embeddings: ``float32[n_docs, dim]``, the rows of ``index``.
        query_embeddings: ``[n_queries, dim]``.
        k: documents per query.
        slack: extra proposals per query on the first try (default ``k``).
        block_size: queries per FAISS call.

    Returns:
        ``int32[n_queries, k]`` rows (``EMPTY`` where the corpus is smaller) and
        ``float32[n_queries, k]`` :func:`exact_scores` (NaN there), best first, ties by lower row.
    """
    n, n_docs = len(query_embeddings), index.ntotal
    ids = np.full((n, k), EMPTY, dtype=np.int32)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    keep = min(k, n_docs)
    if keep == 0:
        return ids, scores
    max_doc_norm = max_row_norm(doc_embeddings)
    first_width = min(keep + (k if slack is None else slack), n_docs)
    bar = tqdm(total=n, desc="Searching", unit="q", disable=not show_progress)
    for start in range(0, n, block_size):
        block = np.ascontiguousarray(query_embeddings[start : start + block_size], dtype=np.float32)
        margin = rounding_margin(np.linalg.norm(block, axis=1), max_doc_norm, block.shape[1])
        found = _exact_block(index, doc_embeddings, block, keep, first_width, margin)
        ids[start : start + len(block), :keep], scores[start : start + len(block), :keep] = found
        bar.update(len(block))
    bar.close()
    return ids, scores


def _exact_block(index, docs, block, keep, width, margin) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_top_k` of one query block: widen the proposals of the queries whose cut is unsure."""
    ids = np.empty((len(block), keep), dtype=np.int32)
    scores = np.empty((len(block), keep), dtype=np.float32)
    pending = np.arange(len(block))
    while len(pending):
        proposed_scores, proposed = index.search(block[pending], width)  # (pending, width)
        cand_ids, cand_scores = order_by_score_then_id(proposed, exact_scores(block[pending], docs, proposed))
        # an unproposed document scores <= FAISS's last proposal in FAISS's arithmetic, so at most
        # margin above it in the fixed kernel's; it could tie or beat the k-th only within that margin
        unsure = (width < index.ntotal) & (proposed_scores[:, -1] + margin[pending] >= cand_scores[:, keep - 1])
        done = pending[~unsure]
        ids[done], scores[done] = cand_ids[~unsure, :keep], cand_scores[~unsure, :keep]
        pending, width = pending[unsure], min(2 * width, index.ntotal)
    return ids, scores


def max_row_norm(embeddings: np.ndarray, rows_per_read: int = 8192) -> float:
    """The largest L2 norm of a row, read ``rows_per_read`` rows at a time (a memmap stays mapped).

    Float32 arithmetic: the bound it feeds (:func:`rounding_margin`) carries a 1 % slack.
    """
    best = 0.0
    for start in range(0, len(embeddings), rows_per_read):
        block = np.asarray(embeddings[start : start + rows_per_read], dtype=np.float32)
        best = max(best, float(np.sqrt(np.einsum("ij,ij->i", block, block).max())))
    return best
