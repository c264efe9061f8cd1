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


@pytest.mark.parametrize("copies", [False, True])
def test_sharded_search_equals_flat_search_bit_for_bit(copies):
    docs, queries = embeddings(seed=1, copies=copies)
    flat_ids, flat_scores = search(build_index(docs, IndexConfig()), queries, 10, show_progress=False)
    ids, scores = search_sharded(docs, queries, 10, shard_size=50, show_progress=False)
    np.testing.assert_array_equal(ids, flat_ids)
    assert np.array_equal(scores.view(np.uint32), flat_scores.view(np.uint32))


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


def test_flat_search_keeps_the_lower_row_among_documents_tied_at_the_k_th_place():
    # hand-built: the query scores the documents 1, 1, 1, 1, 2 (exact in float32); the
    # top-2 by (score desc, row asc) is row 4, then row 0 of the four tied at 1.
    # FAISS's own heap kept row 1 and dropped row 0 before this was fixed.
    docs = np.array([[1, 0], [1, 0], [1, 0], [1, 0], [2, 0]], np.float32)
    query = np.array([[1, 0]], np.float32)
    for k, expected in ((1, [4]), (2, [4, 0]), (3, [4, 0, 1]), (4, [4, 0, 1, 2])):
        ids, scores = search(build_index(docs, IndexConfig()), query, k, show_progress=False)
        assert ids[0].tolist() == expected
        assert scores[0].tolist() == [2.0, 1.0, 1.0, 1.0][:k]
        sharded_ids, _ = search_sharded(docs, query, k, shard_size=2, slack=0, show_progress=False)
        assert sharded_ids[0].tolist() == expected


def test_flat_search_widens_until_every_tie_at_the_cut_is_seen():
    # 60 exact copies of one document (rows 40..99) tie at the 3rd place; FAISS proposes
    # k + slack = 4 rows first, so only widening (4, 8, ..., 64) reaches row 40's turn
    rng = np.random.default_rng(3)
    docs = rng.normal(size=(100, 8)).astype(np.float32) * 0.01
    docs[40:] = 0.0
    docs[40:, 0] = 1.0
    docs[7] = [3, 0, 0, 0, 0, 0, 0, 0]
    docs[13] = [2, 0, 0, 0, 0, 0, 0, 0]
    query = np.eye(1, 8, dtype=np.float32)
    ids, _ = search_sharded(docs, query, 5, shard_size=100, slack=1, show_progress=False)
    assert ids[0].tolist() == [7, 13, 40, 41, 42]
    flat_ids, _ = search(build_index(docs[::-1].copy(), IndexConfig()), query, 5, show_progress=False)
    assert flat_ids[0].tolist() == [92, 86, 0, 1, 2]  # reversed rows: copies are rows 0..59, 3 -> 92, 2 -> 86


def test_flat_search_equals_the_exact_reference_with_many_ties():
    docs, queries = embeddings(n_docs=2000, n_queries=25, dim=8)
    docs[1000:] = docs[:1000]
    for k in (1, 2, 3, 10, 101):
        ids, _ = search(build_index(docs, IndexConfig()), queries, k, show_progress=False)
        np.testing.assert_array_equal(ids, brute_force_top_k(docs, queries, k))
