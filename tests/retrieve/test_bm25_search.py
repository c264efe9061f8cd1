"""BM25 search against the per-query loop it replaced (kept here as the reference) and against bm25s itself."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardneg.candidates import EMPTY
from hardneg.data import Corpus, Queries, RetrievalData
from hardneg.retrieve.bm25 import BM25Config, BM25Retriever
from hardneg.retrieve.bm25_search import score_query, top_k_by_score_then_id

METHODS = ["lucene", "robertson", "atire", "bm25l", "bm25+"]
HAS_NUMBA = importlib.util.find_spec("numba") is not None
BACKENDS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed"))]


def reference_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The tie rule of hardneg's first BM25 search: the k highest scores, best first, ties by lower row."""
    if k >= len(scores):
        part = np.arange(len(scores))
    else:
        part = np.argpartition(-scores, k - 1)[:k]
        kth = scores[part].min()
        part = np.flatnonzero(scores >= kth)
    order = np.lexsort((part, -scores[part]))
    return part[order][:k]


def reference_retrieve(retriever: BM25Retriever, data: RetrievalData, depth: int):
    """hardneg's first BM25 search, verbatim: one bm25s score vector per query, top-k, scores > 0."""
    import bm25s

    cfg = retriever.config
    index = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method)
    index.index(bm25s.tokenize(list(data.corpus.passages), stopwords=cfg.stopwords, stemmer=retriever._stemmer,
                               show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize(list(data.queries.texts), stopwords=cfg.stopwords, stemmer=retriever._stemmer,
                                  return_ids=False, show_progress=False)
    k = min(depth, len(data.corpus))
    doc_ids = np.full((len(query_tokens), depth), EMPTY, dtype=np.int32)
    scores = np.full((len(query_tokens), depth), np.nan, dtype=np.float32)
    positive_scores = []
    for row, tokens in enumerate(query_tokens):
        all_scores = index.get_scores_from_ids(index.get_tokens_ids(tokens))
        top = reference_top_k(all_scores, k)
        top = top[all_scores[top] > 0]
        doc_ids[row, : len(top)] = top
        scores[row, : len(top)] = all_scores[top]
        positive_scores.append(all_scores[data.positives[row]])
    return doc_ids, scores, positive_scores


def assert_same_as_reference(data: RetrievalData, config: BM25Config, depth: int, backend: str) -> None:
    retriever = BM25Retriever(config, backend=backend)
    cands = retriever.retrieve(data, depth, show_progress=False)
    ref_ids, ref_scores, ref_positive = reference_retrieve(retriever, data, depth)
    np.testing.assert_array_equal(cands.doc_ids, ref_ids)
    # bit for bit, not approximately: the same float32 sums in the same order
    assert np.array_equal(cands.scores.view(np.uint32), ref_scores.view(np.uint32))
    for row, expected in enumerate(ref_positive):
        assert np.array_equal(cands.positive_scores[row, : len(expected)].view(np.uint32), expected.view(np.uint32))


def tied_data() -> RetrievalData:
    """Every document twice (exact score ties at every rank), repeated and unknown query words, a query of
    stopwords only: the cases where summation order and the tie rule show."""
    words = ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "peach", "pear", "plum"]
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(words, size=rng.integers(2, 9))) for _ in range(40)]
    texts = texts + texts
    queries = ["apple apple pear", "plum cherry plum cherry mango", "the of and", "kiwi apple", "melon",
               "lemon grape peach banana apple pear", "banana banana banana", "zzz"]
    return RetrievalData(
        corpus=Corpus(ids=[f"d{i}" for i in range(len(texts))], titles=[""] * len(texts), texts=texts),
        queries=Queries(ids=[f"q{i}" for i in range(len(queries))], texts=queries),
        positives=[np.array([i, i + 40], dtype=np.int32) for i in range(len(queries))],
        grades=[np.array([1, 1], dtype=np.int32) for _ in queries],
    )


def crossed_ties_data() -> RetrievalData:
    """Tied documents that a query's postings reach out of row order: row 0 holds only the query's second
    word and row 1 only its first, with equal scores, so the lower row is hit last and must still rank first."""
    texts = ["plum", "pear", "plum", "pear", "fig fig", "kiwi"]
    queries = ["pear plum", "plum pear", "pear kiwi plum fig"]
    return RetrievalData(
        corpus=Corpus(ids=[f"d{i}" for i in range(len(texts))], titles=[""] * len(texts), texts=texts),
        queries=Queries(ids=[f"q{i}" for i in range(len(queries))], texts=queries),
        positives=[np.array([5], dtype=np.int32) for _ in queries],
        grades=[np.array([1], dtype=np.int32) for _ in queries],
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_ties_reached_out_of_row_order_still_go_to_the_lower_row(backend, depth):
    assert_same_as_reference(crossed_ties_data(), BM25Config(stopwords=None), depth, backend)
    cands = BM25Retriever(BM25Config(stopwords=None), backend=backend).retrieve(crossed_ties_data(), depth,
                                                                                 show_progress=False)
    assert cands.doc_ids[0, 0] == 0  # "pear plum": rows 1 and 3 (pear) are hit before 0 and 2 (plum)


def test_top_k_orders_by_score_then_document_row():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.5], np.float32)
    rows = np.arange(6)
    assert top_k_by_score_then_id(rows, scores, 4).tolist() == [1, 4, 0, 2]
    assert top_k_by_score_then_id(rows, scores, 10).tolist() == [1, 4, 0, 2, 5, 3]
    # positions are returned, but ties go to the lower document row, wherever it sits
    rows = np.array([50, 40, 30, 20, 10, 0])
    assert top_k_by_score_then_id(rows, scores, 4).tolist() == [4, 1, 5, 2]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("depth", [1, 7, 500])
def test_bm25_equals_the_per_query_loop_on_tied_data(method, depth, backend):
    assert_same_as_reference(tied_data(), BM25Config(method=method), depth, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_bm25_equals_the_per_query_loop_on_text(tiny_train, method, backend):
    assert_same_as_reference(tiny_train, BM25Config(method=method), 20, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bm25_equals_the_per_query_loop_without_stemming_or_stopwords(tiny_train, backend):
    assert_same_as_reference(tiny_train, BM25Config(stemmer=None, stopwords=None), 50, backend)


def test_bm25_unknown_backend_is_a_clear_error(tiny_train):
    from hardneg.errors import HardnegError

    with pytest.raises(HardnegError, match="backend must be auto, numpy or numba"):
        BM25Retriever(backend="gpu").retrieve(tiny_train, 5, show_progress=False)


def test_bm25_numba_backend_without_numba_says_how_to_install(tiny_train, monkeypatch):
    from hardneg.errors import HardnegError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real_find_spec(name, *a))
    with pytest.raises(HardnegError, match="pip install numba"):
        BM25Retriever(backend="numba").retrieve(tiny_train, 5, show_progress=False)
    # auto falls back to numpy and gives the reference result
    assert_same_as_reference(tiny_train, BM25Config(), 5, "auto")


TORCH_THREADS_AFTER_SEARCH = """
import sys
import torch
if sys.argv[1] == "set-first":
    torch.set_num_threads(1)
torch.get_num_threads()  # torch's pool is set up (as after loading a model); a later change sticks
if sys.argv[2] == "search":
    from hardneg.data import load_beir
    from hardneg.retrieve.bm25 import BM25Retriever
    BM25Retriever(backend="numba").retrieve(load_beir(sys.argv[3], "train"), 5, show_progress=False)
print(torch.get_num_threads())
"""


@pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("torch_threads", ["set-first", "default"])
def test_numba_search_leaves_torch_thread_count_alone(torch_threads, tiny_dir):
    """numba's OpenMP pool, started by the first search of a process, must not change how many threads torch
    uses: a resumed `hardneg train` skips the search and must train with the same count (same float sums)."""

    def threads(search: str) -> int:
        env = {**os.environ, "NUMBA_NUM_THREADS": "3", "OMP_NUM_THREADS": "1"}  # a pool unlike torch's count
        proc = subprocess.run([sys.executable, "-c", TORCH_THREADS_AFTER_SEARCH, torch_threads, search,
                               str(Path(tiny_dir))], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return int(proc.stdout.split()[-1])

    assert threads("search") == threads("no-search") == 1


@pytest.mark.parametrize("method", METHODS)
def test_score_query_is_bm25s_score_vector_bit_for_bit(method):
    import bm25s

    data = tied_data()
    index = bm25s.BM25(method=method)
    index.index(bm25s.tokenize(list(data.corpus.passages), stopwords="en", show_progress=False), show_progress=False)
    rng = np.random.default_rng(3)
    n_terms = len(index.scores["indptr"]) - 1
    for _ in range(50):
        tokens = rng.integers(0, n_terms, size=rng.integers(0, 12)).astype(np.int32)  # repeats included
        expected = index.get_scores_from_ids(tokens.tolist())
        assert np.array_equal(score_query(index, tokens).view(np.uint32), expected.view(np.uint32))
