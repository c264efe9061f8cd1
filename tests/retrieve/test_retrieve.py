"""Retrievers against reference implementations (bm25s, sentence-transformers) and each other."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.candidates import EMPTY, Candidates
from hardneg.retrieve.bm25 import BM25Config, BM25Retriever
from hardneg.retrieve.dense import DenseRetriever
from hardneg.retrieve.hybrid import HybridRetriever, fuse
from hardneg.retrieve.search import IndexConfig, build_index, search


def test_bm25_equals_bm25s_used_directly(tiny_train):
    import bm25s
    import Stemmer

    data = tiny_train
    cands = BM25Retriever(BM25Config()).retrieve(data, 20, show_progress=False)

    stemmer = Stemmer.Stemmer("english")
    index = bm25s.BM25()
    index.index(bm25s.tokenize(list(data.corpus.passages), stopwords="en", stemmer=stemmer, show_progress=False),
                show_progress=False)
    query_tokens = bm25s.tokenize(list(data.queries.texts), stopwords="en", stemmer=stemmer, show_progress=False)
    ref_docs, ref_scores = index.retrieve(query_tokens, k=20, show_progress=False)

    for row in range(len(data.queries)):
        ours = cands.doc_ids[row][cands.doc_ids[row] != EMPTY]
        theirs_positive = ref_scores[row] > 0
        # same scores in the same order, and the same documents up to the order of exact ties
        np.testing.assert_allclose(cands.scores[row, : len(ours)], ref_scores[row][theirs_positive][: len(ours)], rtol=1e-6)
        assert len(ours) == theirs_positive.sum()
        for score in np.unique(ref_scores[row][theirs_positive]):
            tied = set(ref_docs[row][ref_scores[row] == score].tolist())
            ours_tied = set(ours[np.isclose(cands.scores[row, : len(ours)], score, rtol=1e-6)].tolist())
            if score > ref_scores[row][theirs_positive].min():  # the last tie group may be cut differently
                assert ours_tied == tied


def test_bm25_positive_scores_are_the_bm25_scores(tiny_train):
    cands = BM25Retriever().retrieve(tiny_train, len(tiny_train.corpus), show_progress=False)
    for row, pos in enumerate(tiny_train.positives):
        where = np.flatnonzero(cands.doc_ids[row] == pos[0])
        if len(where):  # the positive was retrieved: its score must match
            assert cands.scores[row, where[0]] == pytest.approx(cands.positive_scores[row, 0], rel=1e-6)


def test_bm25_unknown_stemmer_is_a_clear_error():
    from hardneg.errors import HardnegError

    with pytest.raises(HardnegError, match="Unknown stemmer"):
        BM25Retriever(BM25Config(stemmer="klingon"))


def test_flat_search_equals_brute_force():
    rng = np.random.default_rng(0)
    docs = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(37, 16)).astype(np.float32)
    ids, scores = search(build_index(docs, IndexConfig()), queries, 10, block_size=8, show_progress=False)
    brute = queries @ docs.T
    expected = np.argsort(-brute, axis=1)[:, :10]
    assert (ids == expected).all()
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, 1), rtol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_most_exact_neighbours(kind):
    rng = np.random.default_rng(1)
    # clustered data, as embeddings of real text are
    centres = rng.normal(size=(40, 32))
    docs = (centres[rng.integers(0, 40, 2000)] + 0.3 * rng.normal(size=(2000, 32))).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[:100] + 0.05 * rng.normal(size=(100, 32)).astype(np.float32)
    exact, _ = search(build_index(docs, IndexConfig()), queries, 10, show_progress=False)
    approx, _ = search(build_index(docs, IndexConfig(kind=kind, nprobe=16)), queries, 10, show_progress=False)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx.tolist(), exact.tolist())])
    assert recall > 0.8


def test_search_pads_when_corpus_is_smaller_than_k():
    docs = np.eye(3, dtype=np.float32)
    ids, scores = search(build_index(docs, IndexConfig()), docs[:1], 5, show_progress=False)
    assert ids[0, :3].tolist() == [0, 1, 2] and ids[0, 3:].tolist() == [EMPTY, EMPTY]
    assert np.isnan(scores[0, 3:]).all()


def test_rrf_fusion_hand_computed():
    bm25 = (np.array([[7, 3, 5]], np.int32), np.array([[9.0, 8.0, 7.0]], np.float32))
    dense = (np.array([[3, 4, -1]], np.int32), np.array([[0.9, 0.8, np.nan]], np.float32))
    ids, ranks, scores = fuse({"bm25": bm25, "dense": dense}, 4, rrf_k=60)
    # doc 3: 1/62 + 1/61 ; doc 7: 1/61 ; doc 4: 1/62 ; doc 5: 1/63
    assert ids.tolist() == [[3, 7, 4, 5]]
    assert ranks["bm25"].tolist() == [[1, 0, -1, 2]] and ranks["dense"].tolist() == [[0, -1, 1, -1]]
    assert scores["bm25"][0, 0] == 8.0 and np.isnan(scores["dense"][0, 1])


def test_dense_with_fake_encoder_is_exact_search(tiny_train, fake_encoder):
    cands = DenseRetriever(fake_encoder).retrieve(tiny_train, 10, show_progress=False)
    q = fake_encoder.encode_queries(tiny_train.queries.texts)
    d = fake_encoder.encode_documents(tiny_train.corpus.passages)
    sims = q @ d.T
    np.testing.assert_allclose(cands.scores, -np.sort(-sims, axis=1)[:, :10], rtol=1e-5, atol=1e-6)
    for row, pos in enumerate(tiny_train.positives):
        assert cands.positive_scores[row, 0] == pytest.approx(sims[row, pos[0]], abs=1e-6)


def test_hybrid_keeps_provenance_and_dense_scores(tiny_train, fake_encoder):
    bm25 = BM25Retriever()
    hybrid = HybridRetriever(bm25, DenseRetriever(fake_encoder), fusion="rrf")
    cands = hybrid.retrieve(tiny_train, 10, show_progress=False)
    lexical = bm25.retrieve(tiny_train, 10, show_progress=False)
    q = fake_encoder.encode_queries(tiny_train.queries.texts)
    d = fake_encoder.encode_documents(tiny_train.corpus.passages)
    for row in range(len(tiny_train.queries)):
        for col in range(cands.depth):
            doc = cands.doc_ids[row, col]
            if doc == EMPTY:
                continue
            assert cands.scores[row, col] == pytest.approx(float(q[row] @ d[doc]), abs=1e-5)
            r = cands.source_ranks["bm25"][row, col]
            if r >= 0:
                assert lexical.doc_ids[row, r] == doc
                assert cands.source_scores["bm25"][row, col] == lexical.scores[row, r]
            assert r >= 0 or cands.source_ranks["dense"][row, col] >= 0
    union = HybridRetriever(bm25, DenseRetriever(fake_encoder), fusion="union").retrieve(tiny_train, 10, show_progress=False)
    valid = union.doc_ids != EMPTY
    # union lists are ordered by the dense similarity
    for row in range(len(union.doc_ids)):
        s = union.scores[row][valid[row]]
        assert (np.diff(s) <= 1e-6).all()


def test_candidates_parquet_round_trip(tmp_path, tiny_train, fake_encoder):
    bm25 = BM25Retriever()
    cands = HybridRetriever(bm25, DenseRetriever(fake_encoder)).retrieve(tiny_train, 10, show_progress=False)
    cands.save(tmp_path / "c.parquet")
    back = Candidates.load(tmp_path / "c.parquet")
    assert back.query_ids == cands.query_ids and back.method == "hybrid-rrf"
    assert (back.doc_ids == cands.doc_ids).all()
    np.testing.assert_array_equal(back.scores, cands.scores)
    np.testing.assert_array_equal(back.positive_scores, cands.positive_scores)
    for name in ("bm25", "dense"):
        np.testing.assert_array_equal(back.source_ranks[name], cands.source_ranks[name])
        np.testing.assert_array_equal(back.source_scores[name], cands.source_scores[name])


def test_token_budget_batches_bound_padded_tokens():
    from hardneg.runtime import token_budget_batches

    lengths = np.array([10, 256, 12, 200, 256, 8, 100, 30])
    batches = token_budget_batches(lengths, max_batch=4, max_tokens=512)
    assert sorted(np.concatenate(batches).tolist()) == list(range(8))
    for rows in batches:
        assert len(rows) <= 4
        assert len(rows) == 1 or len(rows) * lengths[rows].max() <= 512
    # longest first: [256, 256] then [200, 100] then [30, 12, 10, 8]
    assert [sorted(lengths[b].tolist(), reverse=True) for b in batches] == [[256, 256], [200, 100], [30, 12, 10, 8]]


def test_encoding_hands_freed_heap_back_every_16_batches_and_the_embeddings_do_not_change(monkeypatch, tiny_model):
    import hardneg.runtime as runtime
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    texts = [f"package number {i} does thing {i % 7}" for i in range(40)]
    encoder = SentenceTransformerEncoder(tiny_model, batch_size=1, precision="fp32")  # 40 batches of one text
    plain = encoder.encode_documents(texts, show_progress=False)
    calls = []
    monkeypatch.setattr(runtime, "release_free_heap", lambda: calls.append(1))
    again = encoder.encode_documents(texts, show_progress=False)
    assert len(calls) == 40 // runtime.TRIM_EVERY_BATCHES == 2
    np.testing.assert_array_equal(again, plain)
    # on glibc (these machines) the real call exists and runs
    assert runtime._malloc_trim() is not None
    monkeypatch.undo()
    runtime.release_free_heap()


def test_hybrid_encodes_each_text_once(tiny_train, fake_encoder):
    HybridRetriever(BM25Retriever(), DenseRetriever(fake_encoder)).retrieve(tiny_train, 10, show_progress=False)
    assert fake_encoder.texts_encoded == len(tiny_train.corpus) + len(tiny_train.queries)


def test_registry_builds_every_kind_and_dense_backed_is_declared(fake_encoder):
    from hardneg.choices import RETRIEVERS
    from hardneg.errors import HardnegError
    from hardneg.retrieve.base import DenseBacked
    from hardneg.retrieve.registry import BUILDERS, RetrieverSpec, build_retriever

    assert tuple(BUILDERS) == RETRIEVERS
    built = {kind: build_retriever(RetrieverSpec(kind, encoder=fake_encoder)) for kind in RETRIEVERS}
    assert isinstance(built["bm25"], BM25Retriever) and not isinstance(built["bm25"], DenseBacked)
    assert isinstance(built["dense"], DenseRetriever) and built["dense"].dense_part() is built["dense"]
    hybrid = built["hybrid"]
    assert isinstance(hybrid, HybridRetriever) and isinstance(hybrid, DenseBacked)
    other = DenseRetriever(fake_encoder)
    swapped = hybrid.with_dense_part(other)
    assert swapped.dense_part() is other and swapped.bm25 is hybrid.bm25 and hybrid.dense_part() is not other
    assert swapped.key() == hybrid.key()  # same encoder, same settings
    with pytest.raises(HardnegError, match="needs --model"):
        build_retriever(RetrieverSpec("dense"))
    with pytest.raises(HardnegError, match="retriever must be one of bm25, dense, hybrid"):
        RetrieverSpec("splade")
