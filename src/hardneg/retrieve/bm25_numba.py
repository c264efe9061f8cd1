"""The BM25 search of :mod:`hardneg.retrieve.bm25_search` compiled with numba, queries in parallel.

Optional (``pip install numba``; imported only when numba is installed): same results bit for bit
(the same float32 additions in the same order, the same (score descending, row ascending)
rule), several times faster, on every core numba is allowed (``NUMBA_NUM_THREADS``).

Each query adds its tokens' postings into a per-thread ``float32[n_docs]`` buffer, then keeps
its best ``k`` documents in a heap during one pass over it. Memory: one ``float32[n_docs]``
buffer per thread of numba's pool (``NUMBA_NUM_THREADS``, the core count by default: mind it
on a many-core machine with a large corpus), plus the results.

The search leaves the process's OpenMP thread count as it found it (:func:`openmp_threads_kept`):
numba's OpenMP threading layer would set it to its own pool size, and torch, which shares
that runtime, would then train with another thread count than in a process that never
searched, such as a resumed ``hardneg train``: other float sums, other weights.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Iterator, Sequence

import numba
import numpy as np

logger = logging.getLogger(__name__)


def search_block(
    index, query_token_ids: Sequence[np.ndarray], bases: np.ndarray, k: int, positives: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block of queries: ``int32[block, k]`` rows (-1 padded), ``float32[block, k]`` scores (NaN
    padded) and the positives' scores, flat in ``positives`` order."""
    s = index.scores
    q_ptr = np.concatenate(([0], np.cumsum([len(q) for q in query_token_ids]))).astype(np.int64)
    q_tokens = np.concatenate([np.asarray(q, dtype=np.int64) for q in query_token_ids] + [np.empty(0, np.int64)])
    p_ptr = np.concatenate(([0], np.cumsum([len(p) for p in positives]))).astype(np.int64)
    p_rows = np.concatenate([np.asarray(p, dtype=np.int64) for p in positives] + [np.empty(0, np.int64)])
    n_docs = int(s["num_docs"])
    # one buffer per thread of the pool (get_thread_id() may name any of them, whatever set_num_threads says)
    buffers = np.zeros((numba.config.NUMBA_NUM_THREADS, n_docs), dtype=np.float32)
    ids = np.full((len(query_token_ids), k), -1, dtype=np.int32)
    scores = np.full((len(query_token_ids), k), np.nan, dtype=np.float32)
    positive_scores = np.empty(len(p_rows), dtype=np.float32)
    with openmp_threads_kept():
        _search(s["data"], s["indices"], s["indptr"], q_ptr, q_tokens, bases.astype(np.float32), p_ptr, p_rows,
                buffers, ids, scores, positive_scores)
    return ids, scores, positive_scores


@contextlib.contextmanager
def openmp_threads_kept() -> Iterator[None]:
    """Run the block, then put the process's OpenMP thread count back where it was.

    When numba's thread pool starts on its OpenMP layer (the first parallel call of a process),
    it sets the process-wide OpenMP thread count to ``NUMBA_NUM_THREADS``. torch reads its
    intra-op thread count from the same runtime, so without this a BM25 search would change
    how many threads every later torch op uses (and with it the order of float sums).
    """
    omp = _openmp_runtime()
    before = omp.omp_get_max_threads() if omp is not None else None
    try:
        yield
    finally:
        if before is not None and omp.omp_get_max_threads() != before:
            omp.omp_set_num_threads(before)


def _openmp_runtime():
    """GNU OpenMP as the process has it (torch's or numba's copy, whichever came first; loaded if neither
    has yet: numba's OpenMP layer would load that same one), or None where it is not installed."""
    try:
        return ctypes.CDLL("libgomp.so.1")
    except OSError:
        return None


@numba.njit(inline="always", cache=True)
def _worse(score_a, row_a, score_b, row_b):
    return score_a < score_b or (score_a == score_b and row_a > row_b)


@numba.njit(inline="always", cache=True)
def _sift_down(heap_s, heap_r, size, at):
    # a min-heap on rank: the root is the worst document kept
    while 2 * at + 1 < size:
        child = 2 * at + 1
        if child + 1 < size and _worse(heap_s[child + 1], heap_r[child + 1], heap_s[child], heap_r[child]):
            child += 1
        if not _worse(heap_s[child], heap_r[child], heap_s[at], heap_r[at]):
            break
        heap_s[at], heap_s[child] = heap_s[child], heap_s[at]
        heap_r[at], heap_r[child] = heap_r[child], heap_r[at]
        at = child


@numba.njit(inline="always", cache=True)
def _sift_up(heap_s, heap_r, at):
    while at > 0 and _worse(heap_s[at], heap_r[at], heap_s[(at - 1) // 2], heap_r[(at - 1) // 2]):
        parent = (at - 1) // 2
        heap_s[at], heap_s[parent] = heap_s[parent], heap_s[at]
        heap_r[at], heap_r[parent] = heap_r[parent], heap_r[at]
        at = parent


@numba.njit(parallel=True, nogil=True, cache=True)
def _search(data, indices, indptr, q_ptr, q_tokens, bases, p_ptr, p_rows, buffers, ids, scores, pos_out):
    k = ids.shape[1]
    for q in numba.prange(len(q_ptr) - 1):
        acc = buffers[numba.get_thread_id()]  # all zero between queries
        for t in range(q_ptr[q], q_ptr[q + 1]):  # token after token, as bm25s adds them
            for j in range(indptr[q_tokens[t]], indptr[q_tokens[t] + 1]):
                acc[indices[j]] += data[j]
        base = bases[q]
        heap_s = np.empty(k, dtype=np.float32)
        heap_r = np.empty(k, dtype=np.int64)
        size = 0
        floor = np.float32(0)  # a document must beat this: 0 until k are kept, then the worst kept
        for doc in range(len(acc)):  # rows ascending, so a later document never wins a tie
            score = acc[doc] + base
            if score > floor:
                if size < k:
                    heap_s[size], heap_r[size] = score, doc
                    _sift_up(heap_s, heap_r, size)
                    size += 1
                else:
                    heap_s[0], heap_r[0] = score, doc
                    _sift_down(heap_s, heap_r, size, 0)
                if size == k:
                    floor = heap_s[0]
        for i in range(p_ptr[q], p_ptr[q + 1]):
            pos_out[i] = acc[p_rows[i]] + base
        acc[:] = 0
        for at in range(size - 1, -1, -1):  # pop the worst into the last free slot: the best ends first
            ids[q, at], scores[q, at] = heap_r[0], heap_s[0]
            heap_s[0], heap_r[0] = heap_s[at], heap_r[at]
            _sift_down(heap_s, heap_r, at, 0)
