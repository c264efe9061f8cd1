"""Sharded exact search: the same rows and scores whatever the shards, and the exact top-k."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.candidates import EMPTY
from hardneg.retrieve.search import IndexConfig, build_index, search
from hardneg.retrieve.sharded_search import exact_scores, merge_top_k, search_sharded


def embeddings(n_docs: int = 300, n_queries: int = 41, dim: int = 24, seed: int = 0, copies: bool = True):
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(n_docs, dim)).astype(np.float32)
    if copies:
        docs[200:260] = docs[100:160]  # exact copies: ties that only the row order can break
    queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
    return docs, queries


def brute_force_top_k(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows by (score descending, row ascending), scores in float64."""
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T
    rows = np.broadcast_to(np.arange(len(docs)), scores.shape)
    return np.lexsort((rows, -scores), axis=1)[:, :k]


@pytest.mark.parametrize("shard_size", [1, 7, 64, 100, 299])
def test_sharded_equals_unsharded_bit_for_bit(shard_size):
    docs, queries = embeddings()
    whole_ids, whole_scores = search_sharded(docs, queries, 10, shard_size=len(docs), show_progress=False)
    ids, scores = search_sharded(docs, queries, 10, shard_size=shard_size, show_progress=False)
    np.testing.assert_array_equal(ids, whole_ids)
    assert np.array_equal(scores.view(np.uint32), whole_scores.view(np.uint32))
    # the scores are the fixed kernel's, not whatever the shards' searches computed
    assert np.array_equal(scores.view(np.uint32), exact_scores(queries, docs, ids).view(np.uint32))


def test_sharded_search_is_the_exact_top_k_with_ties_to_the_lower_row():
    docs, queries = embeddings()
    ids, scores = search_sharded(docs, queries, 15, shard_size=37, show_progress=False)
    np.testing.assert_array_equal(ids, brute_force_top_k(docs, queries, 15))
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, docs[ids]), rtol=1e-5)
    # a copied document (rows 200-259 copy 100-159) always comes right after its original
    for row in ids:
        for col, doc in enumerate(row):
            if 200 <= doc < 260:
                assert row[col - 1] == doc - 100


def test_sharded_search_agrees_with_faiss_flat_search():
    # without exact copies: FAISS breaks a tie at the k-th place by its own order, not by the lower row
    docs, queries = embeddings(seed=1, copies=False)
    flat_ids, flat_scores = search(build_index(docs, IndexConfig()), queries, 10, show_progress=False)
    ids, scores = search_sharded(docs, queries, 10, shard_size=50, show_progress=False)
    np.testing.assert_array_equal(ids, flat_ids)
    np.testing.assert_allclose(scores, flat_scores, rtol=1e-5)


def test_sharded_search_reads_a_memory_mapped_corpus(tmp_path):
    docs, queries = embeddings()
    np.save(tmp_path / "docs.npy", docs)
    mapped = np.load(tmp_path / "docs.npy", mmap_mode="r")
    ids, scores = search_sharded(mapped, queries, 5, shard_size=64, show_progress=False)
    expected_ids, expected_scores = search_sharded(docs, queries, 5, shard_size=64, show_progress=False)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(scores, expected_scores)


def test_sharded_search_pads_when_the_corpus_is_smaller_than_k():
    docs = np.eye(3, dtype=np.float32)
    ids, scores = search_sharded(docs, docs[:1] * 2, 5, shard_size=2, show_progress=False)
    assert ids[0].tolist() == [0, 1, 2, EMPTY, EMPTY]
    assert scores[0, :3].tolist() == [2.0, 0.0, 0.0] and np.isnan(scores[0, 3:]).all()


def test_merge_keeps_the_best_by_score_then_row_and_puts_empties_last():
    ids_a = np.array([[4, 9, EMPTY]], np.int32)
    scores_a = np.array([[0.5, 0.2, np.nan]], np.float32)
    ids_b = np.array([[7, 2, 3]], np.int32)
    scores_b = np.array([[0.5, 0.5, 0.1]], np.float32)
    ids, scores = merge_top_k(ids_a, scores_a, ids_b, scores_b, 4)
    assert ids.tolist() == [[2, 4, 7, 9]]
    assert scores[0].tolist() == pytest.approx([0.5, 0.5, 0.5, 0.2])


def test_exact_scores_do_not_depend_on_where_a_pair_sits():
    docs, queries = embeddings(dim=384)
    ids = np.array([[5, 17, EMPTY], [17, 5, 250]], np.int32)
    scores = exact_scores(queries[[0, 0]], docs, ids)
    assert scores[0, 0].view(np.uint32) == scores[1, 1].view(np.uint32)
    assert scores[0, 1].view(np.uint32) == scores[1, 0].view(np.uint32)
    wide = exact_scores(queries[[0]], docs, np.array([[1, 2, 3, 4, 5, 6, 7, 17]], np.int32))
    assert wide[0, -1].view(np.uint32) == scores[0, 1].view(np.uint32)
    assert np.isnan(scores[0, 2])
