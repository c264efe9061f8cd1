"""BM25 top-k search over a bm25s index, with scores bit-identical to bm25s' own.

bm25s precomputes each (term, document) score and stores them term by term (a CSC
matrix over documents x terms). A query's score vector is the float32 sum, in the
query's token order, of its tokens' columns, plus for BM25L / BM25+ the query terms'
non-occurrence scores; :func:`score_query` computes exactly that, in one scatter-add
over the query's postings instead of one per token.

The top-k is taken among the documents scoring > 0 only (a small part of the corpus for
a typical query), ordered by (score descending, document row ascending).

With numba installed, :mod:`hardneg.retrieve.bm25_numba` runs the same computation
compiled, queries in parallel; the results are the same bit for bit.

Memory: the index (8 bytes per (term, document) posting), one ``float32[n_docs]`` score
vector and the ``queries x depth`` results; nothing grows with ``queries x corpus``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from hardneg.candidates import EMPTY
from hardneg.errors import HardnegError

logger = logging.getLogger(__name__)


Backend = Literal["auto", "numpy", "numba"]
_BLOCK = 4096  # queries per progress step (and per call of the compiled kernel)


def search_bm25(
    index,
    query_token_ids: Sequence[np.ndarray],
    depth: int,
    positives: Sequence[np.ndarray],
    *,
    backend: Backend = "auto",
    show_progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``depth`` documents per query of a bm25s index, best first; documents scoring <= 0 left out.

    Args:
        index: an indexed ``bm25s.BM25``.
        query_token_ids: per query, its tokens' ids in the index vocabulary, in query order.
        depth: documents to return per query.
        positives: per query, the document rows whose scores are wanted whatever their rank.
        backend: ``numpy``, ``numba`` (compiled, every core; ``pip install numba``) or ``auto``
            (numba when it imports). Both give the same results bit for bit.

    Returns:
        ``int32[n_queries, depth]`` document rows (``EMPTY`` padded), ``float32[n_queries, depth]``
        scores (NaN padded), and the positives' ``float32`` scores, flat in ``positives`` order.
    """
    compiled = _wants_numba(backend)
    n_docs = int(index.scores["num_docs"])
    k = min(depth, n_docs)
    doc_ids = np.full((len(query_token_ids), depth), EMPTY, dtype=np.int32)
    scores = np.full((len(query_token_ids), depth), np.nan, dtype=np.float32)
    positive_scores: list[np.ndarray] = []
    bar = tqdm(total=len(query_token_ids), desc="BM25 search", unit="q", disable=not show_progress)
    for start in range(0, len(query_token_ids), _BLOCK):
        block = slice(start, min(start + _BLOCK, len(query_token_ids)))
        if compiled:
            from hardneg.retrieve import bm25_numba

            bases = np.array([base_score(index, tokens) for tokens in query_token_ids[block]], dtype=np.float32)
            doc_ids[block, :k], scores[block, :k], flat = bm25_numba.search_block(
                index, query_token_ids[block], bases, k, positives[block]
            )
            positive_scores.append(flat)
        else:
            for row in range(block.start, block.stop):
                all_scores = score_query(index, query_token_ids[row])  # (n_docs,)
                hits = np.flatnonzero(all_scores > 0)
                top = hits[top_k_by_score_then_id(hits, all_scores[hits], k)]
                doc_ids[row, : len(top)] = top
                scores[row, : len(top)] = all_scores[top]
                positive_scores.append(all_scores[positives[row]])
        bar.update(block.stop - block.start)
    bar.close()
    return doc_ids, scores, np.concatenate(positive_scores + [np.empty(0, np.float32)])


def score_query(index, token_ids: np.ndarray) -> np.ndarray:
    """``float32[n_docs]`` BM25 scores of one query, equal bit for bit to ``index.get_scores_from_ids``."""
    s = index.scores
    token_ids = np.asarray(token_ids, dtype=np.int64)
    scores = np.zeros(int(s["num_docs"]), dtype=np.float32)
    if len(token_ids):
        spans = [slice(s["indptr"][t], s["indptr"][t + 1]) for t in token_ids]  # token after token, as bm25s adds
        docs = np.concatenate([s["indices"][span] for span in spans])
        np.add.at(scores, docs, np.concatenate([s["data"][span] for span in spans]))
    if index.nonoccurrence_array is not None:
        scores += base_score(index, token_ids)
    return scores


def base_score(index, token_ids: np.ndarray) -> np.float32:
    """What bm25s adds to every document's score: BM25L / BM25+'s non-occurrence sum (float32), else 0."""
    if index.nonoccurrence_array is None:
        return np.float32(0)
    return index.nonoccurrence_array[np.asarray(token_ids, dtype=np.int64)].sum()


def top_k_by_score_then_id(doc_rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best entries by (score descending, document row ascending), best first."""
    if k < len(scores):
        kth = -np.partition(-scores, k - 1)[k - 1]
        # every tie of the k-th score competes, so the lower rows win whatever partition's order
        keep = np.flatnonzero(scores >= kth)
    else:
        keep = np.arange(len(scores))
    order = np.lexsort((doc_rows[keep], -scores[keep]))
    return keep[order[:k]]


def _wants_numba(backend: Backend) -> bool:
    if backend not in ("auto", "numpy", "numba"):
        raise HardnegError(f"BM25 backend must be auto, numpy or numba; got {backend!r}.")
    installed = importlib.util.find_spec("numba") is not None
    if backend == "numba" and not installed:
        raise HardnegError("The numba BM25 backend needs numba: pip install numba (or use backend='numpy').")
    return backend == "numba" or (backend == "auto" and installed)
