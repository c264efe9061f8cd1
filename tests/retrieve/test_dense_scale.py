"""Dense search at scale: sharded exact search in the retriever, compressed indexes with their recall,
float16 embeddings, and the memory budget's block sizes."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.candidates import EMPTY, Candidates
from hardneg.data.values import Corpus, Queries, RetrievalData
from hardneg.errors import HardnegError
from hardneg.retrieve.dense import DenseRetriever
from hardneg.retrieve.exact import exact_scores
from hardneg.retrieve.memory_plan import BlockPlan, block_plan, default_doc_shard, parse_bytes
from hardneg.retrieve.recall import recall_against_exact, sample_queries
from hardneg.retrieve.search import IndexConfig, default_nlist, default_pq_m, index_parameters, training_rows
from hardneg.store import RunDir


class TableEncoder:
    """Text ``"doc 17"`` / ``"query 3"`` -> row 17 / 3 of a fixed matrix: embeddings chosen by the test."""

    def __init__(self, docs: np.ndarray, queries: np.ndarray) -> None:
        self.docs, self.queries = docs, queries

    def key(self) -> str:
        return "table"

    def encode_documents(self, texts, *, show_progress: bool = True) -> np.ndarray:
        return self.docs[[int(t.split()[1]) for t in texts]]

    def encode_queries(self, texts, *, show_progress: bool = True) -> np.ndarray:
        return self.queries[[int(t.split()[1]) for t in texts]]


def table_data(n_docs: int = 600, n_queries: int = 40, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    docs = (centres[rng.integers(0, 12, n_docs)] + 0.4 * rng.normal(size=(n_docs, dim))).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    docs[300:340] = docs[100:140]  # exact copies: ties only the row breaks
    queries = (docs[rng.integers(0, n_docs, n_queries)] + 0.1 * rng.normal(size=(n_queries, dim))).astype(np.float32)
    corpus = Corpus(ids=[f"d{i}" for i in range(n_docs)], titles=[""] * n_docs, texts=[f"doc {i}" for i in range(n_docs)])
    qs = Queries(ids=[f"q{i}" for i in range(n_queries)], texts=[f"query {i}" for i in range(n_queries)])
    positives = [np.array([i % n_docs], np.int32) for i in range(n_queries)]
    data = RetrievalData(corpus, qs, positives, [np.array([1], np.int32)] * n_queries)
    return data, TableEncoder(docs, queries)


def reference_top_k(docs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact numpy search: rows by (float64 score descending, row ascending)."""
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T
    return np.lexsort((np.broadcast_to(np.arange(len(docs)), scores.shape), -scores), axis=1)[:, :k]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_search_shard_size_does_not_change_a_byte_of_the_candidates_file(tmp_path, dtype):
    data, encoder = table_data()
    files = []
    for shard in (600, 97, 256, 1):
        run = RunDir(tmp_path / f"run-{dtype}")  # one run dir: the embeddings are read memory-mapped
        dense = DenseRetriever(encoder, embedding_dtype=dtype, search_shard_size=shard)
        dense.retrieve(data, 20, run_dir=run, show_progress=False).save(tmp_path / f"{dtype}-{shard}.parquet")
        files.append((tmp_path / f"{dtype}-{shard}.parquet").read_bytes())
    assert all(f == files[0] for f in files)


def test_sharded_dense_candidates_are_exact_search_over_the_stored_embeddings(tmp_path):
    data, encoder = table_data()
    cands = DenseRetriever(encoder, embedding_dtype="float16", search_shard_size=64).retrieve(
        data, 20, run_dir=RunDir(tmp_path / "run"), show_progress=False)
    stored_docs = encoder.docs.astype(np.float16).astype(np.float32)
    stored_queries = encoder.queries.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(cands.doc_ids, reference_top_k(stored_docs, stored_queries, 20))
    np.testing.assert_array_equal(cands.scores, exact_scores(stored_queries, stored_docs, cands.doc_ids))
    # the positive's score comes from the same kernel as the candidates'
    pos = np.array([[p[0]] for p in data.positives])
    np.testing.assert_array_equal(cands.positive_scores, exact_scores(stored_queries, stored_docs, pos))


def test_float16_embeddings_are_stored_as_float16_and_memory_mapped(tmp_path):
    data, encoder = table_data()
    run = RunDir(tmp_path / "run")
    dense = DenseRetriever(encoder, embedding_dtype="float16")
    queries, docs = dense.embed(data, run_dir=run, show_progress=False)
    assert isinstance(docs, np.memmap) and docs.dtype == np.float16 and queries.dtype == np.float16
    np.testing.assert_array_equal(docs, encoder.docs.astype(np.float16))
    # a float32 retriever does not reuse them, and keys differ
    wide = DenseRetriever(encoder)
    assert wide.embed(data, run_dir=run, show_progress=False)[1].dtype == np.float32
    assert wide.key() != dense.key()
    with pytest.raises(HardnegError, match="embedding dtype must be one of float16, float32"):
        DenseRetriever(encoder, embedding_dtype="int8")


def test_recall_against_exact_hand_computed():
    approx = np.array([[1, 2, 3], [4, 5, 6], [7, EMPTY, EMPTY]])
    exact = np.array([[1, 2, 9], [6, 5, 4], [7, 8, EMPTY]])
    assert recall_against_exact(approx, exact) == pytest.approx((2 / 3 + 3 / 3 + 1 / 2) / 3)


@pytest.mark.parametrize("kind", ["ivf-pq", "ivf-sq8", "ivf", "hnsw"])
def test_the_report_states_the_recall_of_an_approximate_index_against_exact_numpy_search(tmp_path, kind):
    from hardneg.mine import Miner

    data, encoder = table_data()
    index = IndexConfig(kind=kind, nlist=8, nprobe=1, pq_m=4, refine_factor=1, recall_queries=15)
    result = Miner(DenseRetriever(encoder, index), depth=10, run_dir=tmp_path / "run", show_progress=False).mine(data)
    rows = sample_queries(len(data.queries), 15)
    truth = reference_top_k(encoder.docs, encoder.queries[rows], 10)
    found = result.candidates.doc_ids[rows]
    hand = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found.tolist(), truth.tolist())])
    quality = result.report.search_quality
    ran = ({"hnsw_m": 32, "ef_construction": 200, "ef_search": 256} if kind == "hnsw" else
           {"nlist": 8, "nprobe": 1, "train_sample": len(encoder.docs), **({"pq_m": 4} if kind == "ivf-pq" else {})})
    assert quality == {"index": kind, "parameters": {**ran, "refine_factor": 1}, "depth": 10, "queries": 15,
                       "recall_vs_exact": pytest.approx(hand, abs=1e-6)}
    assert 0.2 < hand < 1.0 or kind == "hnsw"  # nprobe 1 of 8 cells misses some: the figure is not trivially 1
    # scores of the approximate candidates are the exact kernel's, best first
    ids = result.candidates.doc_ids
    np.testing.assert_array_equal(result.candidates.scores, exact_scores(encoder.queries, encoder.docs, ids))
    # saved with the candidates: a rerun that reuses them reports it again
    again = Miner(DenseRetriever(encoder, index), depth=10, run_dir=tmp_path / "run", show_progress=False).mine(data)
    assert again.reused_candidates and again.report.search_quality == quality
    shown = ", ".join(f"{name.replace('_', ' ')} {quality['parameters'][name]}" for name in sorted(quality["parameters"]))
    assert f"{kind} ({shown}): recall@10 against exact search {quality['recall_vs_exact']:.4f}" in again.report.format_table()


def test_the_report_records_the_index_parameters_with_every_default_resolved():
    # ivf-pq on 8.8 M x 384: nlist capped at 4,096, trained on 39 x 4,096 documents, 384 / 8 = 48 bytes a code
    assert index_parameters(IndexConfig(kind="ivf-pq"), 8_800_000, 384) == {
        "nlist": 4096, "nprobe": 32, "train_sample": 159_744, "pq_m": 48, "refine_factor": 2}
    # 1,000 documents: nlist = 1000 // 39 = 25 cells, so nprobe 64 visits all 25; all documents train it
    assert index_parameters(IndexConfig(kind="ivf", nprobe=64, refine_factor=3), 1000, 8) == {
        "nlist": 25, "nprobe": 25, "train_sample": 1000, "refine_factor": 3}
    assert index_parameters(IndexConfig(kind="ivf-sq8", nlist=10, train_sample=777), 10**6, 384) == {
        "nlist": 10, "nprobe": 10, "train_sample": 777, "refine_factor": 2}
    assert index_parameters(IndexConfig(kind="hnsw", ef_search=64), 10, 4) == {
        "hnsw_m": 32, "ef_construction": 200, "ef_search": 64, "refine_factor": 2}
    assert index_parameters(IndexConfig(), 10**6, 384) == {}  # exact search has nothing to tune


def test_an_approximate_index_finds_refine_factor_times_depth_and_keeps_the_exactly_best():
    from hardneg.retrieve.search import build_index, search

    data, encoder = table_data()
    recalls = []
    truth = reference_top_k(encoder.docs, encoder.queries, 10)
    for factor in (1, 4):
        index = IndexConfig(kind="ivf-pq", nlist=8, nprobe=2, pq_m=2, refine_factor=factor)
        cands = DenseRetriever(encoder, index).retrieve(data, 10, show_progress=False)
        # by hand: FAISS's 10 x factor candidates, scored by the exact kernel, the best 10 by (score desc, row asc)
        found, _ = search(build_index(encoder.docs, index), encoder.queries, 10 * factor, show_progress=False)
        scores = exact_scores(encoder.queries, encoder.docs, found)
        order = np.lexsort((found, -scores), axis=1)[:, :10]
        np.testing.assert_array_equal(cands.doc_ids, np.take_along_axis(found, order, 1))
        recalls.append(np.mean([len(set(c) & set(t)) / 10 for c, t in zip(cands.doc_ids.tolist(), truth.tolist())]))
    # 2-byte codes misorder close documents: asking for 4x as many and rescoring finds more of the true top 10
    assert recalls[1] > recalls[0]


def test_exact_search_reports_no_recall(tmp_path):
    data, encoder = table_data()
    cands = DenseRetriever(encoder).retrieve(data, 5, show_progress=False)
    assert cands.search_quality == {}
    cands.save(tmp_path / "c.parquet")
    assert Candidates.load(tmp_path / "c.parquet").search_quality == {}


def test_ivf_pq_settings_are_checked():
    from hardneg.retrieve.search import build_index

    docs = np.random.default_rng(0).normal(size=(300, 12)).astype(np.float32)
    with pytest.raises(HardnegError, match="--pq-m must divide the embedding width 12; got 5. Try 1"):
        build_index(docs, IndexConfig(kind="ivf-pq", pq_m=5))
    with pytest.raises(HardnegError, match="needs at least 256 documents"):
        build_index(docs[:100], IndexConfig(kind="ivf-pq", nlist=2))
    index = build_index(docs, IndexConfig(kind="ivf-pq", nlist=4, pq_m=6))
    assert (index.pq.M, index.nlist, index.ntotal) == (6, 4, 300)
    with pytest.raises(HardnegError, match="nprobe must be at least 1"):
        IndexConfig(kind="ivf", nprobe=0)


def test_a_small_pq_training_set_is_reported_once_by_hardneg_not_per_sub_quantiser_by_faiss(capfd, caplog):
    from hardneg.retrieve.search import PQ_WELL_TRAINED, build_index

    docs = np.random.default_rng(0).normal(size=(600, 48)).astype(np.float32)
    with caplog.at_level("WARNING", logger="hardneg.retrieve.search"):
        index = build_index(docs, IndexConfig(kind="ivf-pq", nlist=4, pq_m=12))
    assert index.ntotal == 600
    assert [r.getMessage() for r in caplog.records] == [
        f"ivf-pq trains 256 codes per sub-quantiser from 600 documents (FAISS wants {PQ_WELL_TRAINED}): its codes will "
        "be coarse. For a corpus this small, --index flat (exact, the default) is fast enough."]
    assert "WARNING clustering" not in capfd.readouterr().err  # FAISS said nothing (it would, 12 times)
    caplog.clear()
    build_index(np.tile(docs, (17, 1)), IndexConfig(kind="ivf-pq", nlist=4, pq_m=12))  # 10,200 documents
    assert not caplog.records


def test_default_nlist_is_4_sqrt_n_until_it_reaches_the_cap():
    # 4 sqrt(N), but at least 39 documents a cell and never more than 4,096 cells
    assert [default_nlist(n) for n in (10, 10_000, 100_000, 1_000_000)] == [1, 256, 1264, 4000]
    assert default_nlist(1_048_576) == 4096 == default_nlist(8_800_000) == default_nlist(100_000_000)


def test_the_default_nlist_is_what_an_ivf_index_gets(monkeypatch):
    from hardneg.retrieve import search as search_module

    docs = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)
    assert search_module.build_index(docs, IndexConfig(kind="ivf")).nlist == 51  # 2,000 // 39 (4 sqrt: 178)
    monkeypatch.setattr(search_module, "NLIST_CAP", 16)
    assert search_module.build_index(docs, IndexConfig(kind="ivf")).nlist == 16
    assert search_module.build_index(docs, IndexConfig(kind="ivf", nlist=30)).nlist == 30  # asked for: no cap


def test_default_pq_m_and_the_training_sample():
    assert default_pq_m(384) == 48 and default_pq_m(768) == 96 and default_pq_m(24) == 3 and default_pq_m(7) == 1
    assert training_rows(1000, 10, None).tolist() == list(range(1000))  # max(390, 50,000) caps at n
    rows = training_rows(10**6, 4000, None)  # max(39 * 4000, 50,000) = 156,000
    assert len(rows) == 156_000 and (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, training_rows(10**6, 4000, None))  # seeded: the same every run
    assert len(training_rows(10**6, 10, None)) == 50_000 and len(training_rows(10**6, 10, 777)) == 777


def test_parse_bytes():
    assert parse_bytes("4GB") == 4 * 10**9 and parse_bytes("512MiB") == 512 * 2**20
    assert parse_bytes("2.5 gb") == 2_500_000_000 and parse_bytes("1000") == 1000
    with pytest.raises(HardnegError, match="looks like 4GB"):
        parse_bytes("lots")


def test_block_plan_hand_computed():
    # 1 GB, 1 M docs of 384 float16 values, depth 100:
    # doc shard:   0.5 GB / ((8 + 2) * 384 B)          = 130,208 documents
    # query block: 0.125 GB / (16 * 100 * 384 B)       = 203 -> at least 256
    # encode:      0.0625 GB / (4 * 384 B)              = 40,690 texts
    assert block_plan(10**9, 10**6, 384, 2) == BlockPlan(query_block=256, doc_shard=130_208, encode_shard=40_690)
    # 16 GB: the shard holds the whole (smaller) corpus; query blocks 16e9 / 8 / 614,400 = 3,255
    assert block_plan(16 * 10**9, 10**6, 384, 2) == BlockPlan(query_block=3255, doc_shard=10**6, encode_shard=65536)
    # a corpus smaller than the floor: all of it
    assert block_plan(10**6, 100, 384, 4).doc_shard == 100


def test_without_a_budget_exact_search_shards_hold_at_most_512_mib_of_float32():
    # 512 MiB / (4 * 384 B) = 349,525.33 -> 349,525 documents; 768 wide: 174,762; a smaller corpus: one shard
    assert default_doc_shard(10**6, 384) == 349_525 and default_doc_shard(10**6, 768) == 174_762
    assert default_doc_shard(52_000, 384) == 52_000 and default_doc_shard(0, 384) == 1
    plain = DenseRetriever(object())
    assert plain.plan(10**6, 384) == BlockPlan(query_block=4096, doc_shard=349_525, encode_shard=1024)
    assert plain.plan(11_215, 384).doc_shard == 11_215  # debian-desc small: searched in one piece, as before


def test_the_memory_budget_sets_the_block_sizes_and_leaves_the_candidates_alone(tmp_path):
    data, encoder = table_data()
    budget = DenseRetriever(encoder, embedding_dtype="float16", memory_budget=10**6)
    # 1 MB, 600 docs of 16 float16 values, depth 20: query block 125,000 / (16 * 20 * 16) = 24 -> at least 256;
    # doc shard 500,000 / (10 * 16) = 3,125 -> all 600; encode 62,500 / 64 = 976
    assert budget.plan(600, 16, 20) == block_plan(10**6, 600, 16, 2, 20) == BlockPlan(256, 600, 976)
    small = DenseRetriever(encoder, embedding_dtype="float16", memory_budget=10**5)
    assert small.plan(600, 16, 20).doc_shard == 312  # 50,000 / 160: two shards
    plain = DenseRetriever(encoder, embedding_dtype="float16").retrieve(data, 20, show_progress=False)
    tight = small.retrieve(data, 20, show_progress=False)
    np.testing.assert_array_equal(plain.doc_ids, tight.doc_ids)
    np.testing.assert_array_equal(plain.scores, tight.scores)
