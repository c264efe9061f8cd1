"""Pool-scope ANCE refresh: which documents it re-encodes, that it agrees with a full refresh where it must,
when it falls back to a full one, what it logs, and that it resumes from a checkpoint exactly."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeEncoder

from hardneg.data import Corpus, Queries, RetrievalData
from hardneg.errors import HardnegError
from hardneg.mine import Miner
from hardneg.retrieve.dense import DenseRetriever
from hardneg.select import SelectionConfig
from hardneg.train.pool import pool_from_selection
from hardneg.train.refresh import RefreshConfig, Refresher
from hardneg.train.refresh_scope import fresh_query_pool, pool_scope, scoped_data, to_corpus_rows


class DriftingEncoder(FakeEncoder):
    """A fake whose 'weights' change at every forget_key() (new hash buckets, so new embeddings)."""

    def forget_key(self) -> None:
        self.salt += "+"


class SnapshotEncoder(DriftingEncoder):
    def snapshot(self, folder):
        from pathlib import Path

        Path(folder).mkdir(parents=True, exist_ok=True)
        return SnapshotEncoder(self.dim, self.salt)


def test_pool_scope_is_the_union_of_each_querys_top_candidates_and_every_positive():
    candidates = np.array([[3, 1, -1], [1, 5, 2]], np.int32)
    positives = (np.array([0], np.int32), np.array([7, 9], np.int32))
    assert pool_scope(candidates, positives, depth=1).tolist() == [0, 1, 3, 7, 9]
    assert pool_scope(candidates, positives, depth=2).tolist() == [0, 1, 3, 5, 7, 9]
    assert pool_scope(candidates, positives, depth=3).tolist() == [0, 1, 2, 3, 5, 7, 9]  # -1 is no document
    with pytest.raises(HardnegError, match="at least 1"):
        pool_scope(candidates, positives, depth=0)


def test_fresh_query_pool_is_each_querys_nearest_stale_documents_and_every_positive():
    stale = np.array([[1, 0], [0, 1], [0.8, 0.6], [-1, 0]], np.float32)
    queries = np.array([[1, 0], [0, 1]], np.float32)  # nearest: d0 (1.0) then d2 (0.8); d1 (1.0) then d2 (0.6)
    positives = (np.array([3], np.int32), np.array([], np.int32))
    assert fresh_query_pool(queries, stale, positives, depth=1).tolist() == [0, 1, 3]
    assert fresh_query_pool(queries, stale, positives, depth=2).tolist() == [0, 1, 2, 3]
    assert fresh_query_pool(queries, stale.astype(np.float16), positives, depth=2).tolist() == [0, 1, 2, 3]
    with pytest.raises(HardnegError, match="at least 1"):
        fresh_query_pool(queries, stale, positives, depth=0)


def _five_docs() -> RetrievalData:
    corpus = Corpus(ids=["a", "b", "c", "d", "e"], titles=[""] * 5, texts=["ta", "tb", "tc", "td", "te"])
    queries = Queries(ids=["q0", "q1"], texts=["x", "y"])
    return RetrievalData(corpus, queries, (np.array([1], np.int32), np.array([2, 4], np.int32)),
                         (np.array([1], np.int32), np.array([1, 2], np.int32)))


def test_scoped_data_cuts_the_corpus_and_points_the_positives_into_it():
    data = _five_docs()
    cut = scoped_data(data, np.array([1, 2, 4]))
    assert cut.corpus.ids == ("b", "c", "e") and cut.corpus.passages == ("tb", "tc", "te")
    assert [p.tolist() for p in cut.positives] == [[0], [1, 2]]
    assert [g.tolist() for g in cut.grades] == [[1], [1, 2]] and cut.queries is data.queries
    with pytest.raises(HardnegError, match="positive is outside"):
        scoped_data(data, np.array([1, 2]))  # row 4, a positive of q1, is missing


def test_to_corpus_rows_maps_candidates_negatives_and_denoised_back_and_keeps_empty_slots(tiny_train):
    miner = Miner(DenseRetriever(FakeEncoder()), SelectionConfig(num_negatives=2), show_progress=False)
    rows = pool_scope(miner.candidates(tiny_train)[0].doc_ids, tiny_train.positives, depth=5)
    cut = miner.mine(scoped_data(tiny_train, rows), save_report=False)
    lifted = to_corpus_rows(cut, rows)
    assert lifted.candidates.doc_ids.tolist() == [[int(rows[d]) if d >= 0 else -1 for d in r]
                                                  for r in cut.candidates.doc_ids.tolist()]
    assert lifted.selection.negatives.tolist() == [[int(rows[d]) for d in r] for r in cut.selection.negatives.tolist()]
    # the same documents, by text, in both corpora
    assert tiny_train.corpus.passages[int(lifted.selection.negatives[0, 0])] == \
        scoped_data(tiny_train, rows).corpus.passages[int(cut.selection.negatives[0, 0])]


def tiny_config(**fields) -> RefreshConfig:
    """A refresh config for the tiny corpus (210 documents), where most pools hold over half of it, which
    refreshes in full by default (``pool_at_most``, tested on its own): here the pool mechanics are the point."""
    return RefreshConfig(pool_at_most=1.0, **fields)


def _refresher(tiny_train, tmp_path, name, config, encoder=None, *, depth=None, run_dir=False):
    encoder = encoder or DriftingEncoder()
    miner = Miner(DenseRetriever(encoder), SelectionConfig(num_negatives=2), depth=depth, show_progress=False,
                  run_dir=tmp_path / f"run-{name}" if run_dir else None)
    first = miner.mine(tiny_train)
    pool = pool_from_selection(tiny_train, first.selection)
    return Refresher(miner, tiny_train, pool, config, candidates=first.candidates), encoder


def _pool_rows(refresher) -> np.ndarray:
    """The documents a pool-scope refresh of every query re-encodes."""
    return pool_scope(refresher.scope_candidates, refresher.data.positives, refresher.scope_depth)


def _same_fields(entry):
    return {k: v for k, v in entry.items()
            if not k.startswith("seconds") and k not in ("scope", "pool", "documents_encoded")}


def test_scoped_data_with_queries_keeps_only_those_and_to_corpus_rows_maps_their_rows_back(tiny_train):
    miner = Miner(DenseRetriever(FakeEncoder()), SelectionConfig(num_negatives=2), show_progress=False)
    queries = np.array([1, 4, 6])
    candidates = miner.candidates(tiny_train)[0].doc_ids[queries]
    rows = pool_scope(candidates, [tiny_train.positives[q] for q in queries], depth=5)
    cut = scoped_data(tiny_train, rows, queries)
    assert cut.queries.ids == tuple(tiny_train.queries.ids[q] for q in queries)
    with pytest.raises(HardnegError, match="positive is outside"):
        scoped_data(tiny_train, rows)  # every query's positives: not all in the three queries' pool
    lifted = to_corpus_rows(miner.mine(cut, save_report=False), rows, queries)
    assert set(lifted.selection.query_rows.tolist()) <= set(queries.tolist())
    for i, q in enumerate(lifted.selection.query_rows.tolist()):
        assert not set(lifted.selection.negatives[i].tolist()) & set(tiny_train.positives[q].tolist())


def _look_ahead_refreshers(tiny_train, tmp_path, depth):
    """A pool-scope refresher told that the next batches hold examples 2, 5 and 9, and a full one."""
    config = tiny_config(every=1, scope="pool", scope_depth=depth, full_every=None)
    ahead, _ = _refresher(tiny_train, tmp_path, "ahead", config, depth=depth)
    examples = np.array([9, 2, 5, 2])
    ahead.look_ahead = lambda batches: examples
    full, _ = _refresher(tiny_train, tmp_path, "full", tiny_config(every=1, scope="full"), depth=depth)
    return ahead, full, sorted({int(ahead.pool.query_rows[e]) for e in examples})


def test_with_a_look_ahead_a_pool_refresh_mines_only_the_queries_trained_on_next(tiny_train, tmp_path):
    n = len(tiny_train.corpus)
    ahead, full, queries = _look_ahead_refreshers(tiny_train, tmp_path, depth=n)  # pool = whole corpus
    before = list(ahead.pool.negatives)
    entry, _ = ahead.refresh(1), full.refresh(1)
    assert entry["scope"] == "pool" and entry["queries_mined"] == len(queries) == 3
    for i, q in enumerate(ahead.pool.query_rows.tolist()):
        if q in queries:  # exactly a full refresh's negatives for the queries trained on next
            assert ahead.pool.negatives[i] == full.pool.negatives[i]
        else:  # the others keep theirs until their turn
            assert ahead.pool.negatives[i] == before[i]
    assert ahead.pool.negatives != full.pool.negatives


def test_with_a_look_ahead_only_those_queries_candidates_are_encoded(tiny_train, tmp_path):
    ahead, _, queries = _look_ahead_refreshers(tiny_train, tmp_path, depth=5)
    encoder = ahead.dense.encoder
    expected = pool_scope(ahead.scope_candidates[queries], [tiny_train.positives[q] for q in queries], 5)
    before = encoder.texts_encoded
    entry = ahead.refresh(1)
    assert entry["documents_encoded"] == len(expected) == encoder.texts_encoded - before - len(queries)
    assert len(expected) < len(_pool_rows(ahead))  # smaller than every query's pool


def test_with_a_run_dir_the_pool_is_where_the_current_model_puts_those_queries_in_the_stale_index(tiny_train,
                                                                                                   tmp_path):
    config = tiny_config(every=1, scope="pool", scope_depth=4, full_every=None)
    refresher, encoder = _refresher(tiny_train, tmp_path, "fresh", config, depth=8, run_dir=True)
    examples = np.array([9, 2, 5])
    refresher.look_ahead = lambda batches: examples
    queries = sorted({int(refresher.pool.query_rows[e]) for e in examples})
    stale = DriftingEncoder(encoder.dim, encoder.salt).encode_documents(list(tiny_train.corpus.passages))
    np.testing.assert_array_equal(refresher.stale_documents, stale)  # the first mining's, from its run dir
    encoder.forget_key()  # training moved the weights
    current = DriftingEncoder(encoder.dim, encoder.salt).encode_queries([tiny_train.queries.texts[q] for q in queries])
    expected = fresh_query_pool(current, stale, [tiny_train.positives[q] for q in queries], 4)
    assert not np.array_equal(expected, pool_scope(refresher.scope_candidates[queries],
                                                   [tiny_train.positives[q] for q in queries], 4))
    before = encoder.texts_encoded
    entry = refresher.refresh(1)
    assert entry["scope"] == "pool" and entry["pool"] == "fresh-queries" and entry["queries_mined"] == 3
    assert entry["documents_encoded"] == len(expected)
    assert encoder.texts_encoded - before == len(expected) + 2 * len(queries)  # queries: for the pool, then mined


def test_without_a_look_ahead_every_querys_nearest_stale_documents_form_the_pool(tiny_train, tmp_path):
    config = tiny_config(every=1, scope="pool", scope_depth=3, full_every=None)
    refresher, encoder = _refresher(tiny_train, tmp_path, "all", config, depth=8, run_dir=True)
    stale = np.array(refresher.stale_documents)
    current = DriftingEncoder(encoder.dim, encoder.salt).encode_queries(list(tiny_train.queries.texts))
    entry = refresher.refresh(1)
    assert entry["pool"] == "fresh-queries" and entry["queries_mined"] == len(tiny_train.queries)
    assert entry["documents_encoded"] == len(fresh_query_pool(current, stale, tiny_train.positives, 3))


def test_without_a_run_dir_the_pool_is_the_last_minings_candidates(tiny_train, tmp_path):
    ahead, _, _ = _look_ahead_refreshers(tiny_train, tmp_path, depth=5)
    assert ahead.stale_documents is None and ahead.refresh(1)["pool"] == "candidates"


def test_pool_scope_as_deep_as_the_corpus_equals_a_full_refresh_exactly(tiny_train, tmp_path):
    n = len(tiny_train.corpus)
    pool_r, _ = _refresher(tiny_train, tmp_path, "pool", tiny_config(every=1, scope="pool", scope_depth=n), depth=n)
    full_r, _ = _refresher(tiny_train, tmp_path, "full", tiny_config(every=1, scope="full"), depth=n)
    for step in (1, 2, 3):
        a, b = pool_r.refresh(step), full_r.refresh(step)
        assert a["scope"] == "pool" and b["scope"] == "full"
        assert a["documents_encoded"] == b["documents_encoded"] == n
        assert _same_fields(a) == _same_fields(b)
        assert pool_r.pool.negatives == full_r.pool.negatives
    assert pool_r.pool.version == 3 and full_r.pool.version == 3


def test_a_shallow_pool_gives_the_full_refreshs_negatives_wherever_those_lie_in_the_pool(tiny_train, tmp_path):
    pool_r, _ = _refresher(tiny_train, tmp_path, "pool", tiny_config(every=1, scope="pool", scope_depth=5))
    full_r, _ = _refresher(tiny_train, tmp_path, "full", tiny_config(every=1, scope="full"))
    rows = _pool_rows(pool_r)
    assert 0 < len(rows) < len(tiny_train.corpus)
    in_pool = {tiny_train.corpus.passages[r] for r in rows}
    pool_r.refresh(1)
    full_r.refresh(1)
    agree = 0
    for mine, full in zip(pool_r.pool.negatives, full_r.pool.negatives):
        assert set(mine) <= in_pool  # queries whose neighbours left the pool get candidates from the pool
        if set(full) <= in_pool:
            assert mine == full
            agree += 1
    assert agree > 0


def test_full_every_makes_every_fth_refresh_full_and_that_one_renews_the_pool(tiny_train, tmp_path):
    refresher, _ = _refresher(tiny_train, tmp_path, "p", tiny_config(every=1, scope="pool", scope_depth=5,
                                                                       full_every=3))
    scopes, pools = [], [refresher.scope_candidates]
    for step in range(1, 7):
        entry = refresher.refresh(step)
        scopes.append(entry["scope"])
        pools.append(refresher.scope_candidates)
        if entry["scope"] == "full":  # the pool of the next refreshes: this refresh's own top-5 candidates
            expected = refresher.miner.candidates(tiny_train)[0].doc_ids[:, :5]
            assert refresher.scope_candidates.tolist() == expected.tolist()
    assert scopes == ["pool", "pool", "full", "pool", "pool", "full"]
    assert pools[0] is pools[1] is pools[2] and pools[3] is pools[4] is pools[5]  # only full refreshes renew it
    assert pools[3].tolist() != pools[0].tolist()  # the drifted model's neighbourhoods differ


def test_without_a_known_pool_the_first_refresh_is_full(tiny_train):
    miner = Miner(DenseRetriever(DriftingEncoder()), SelectionConfig(num_negatives=2), show_progress=False)
    pool = pool_from_selection(tiny_train, miner.mine(tiny_train).selection)
    refresher = Refresher(miner, tiny_train, pool, tiny_config(every=1, scope="pool", full_every=None))
    assert [refresher.refresh(s)["scope"] for s in (1, 2, 3)] == ["full", "pool", "pool"]


def test_the_logged_document_count_is_what_the_encoder_encoded(tiny_train, tmp_path):
    refresher, encoder = _refresher(tiny_train, tmp_path, "p", tiny_config(every=1, scope="pool", scope_depth=5,
                                                                                  full_every=2))
    n_queries, first_pool = len(tiny_train.queries), _pool_rows(refresher)
    for step in (1, 2):
        before = encoder.texts_encoded
        entry = refresher.refresh(step)
        assert entry["documents_encoded"] == encoder.texts_encoded - before - n_queries
    assert [e["scope"] for e in refresher.history] == ["pool", "full"]
    assert refresher.history[0]["documents_encoded"] == len(first_pool) < len(tiny_train.corpus)
    assert refresher.history[1]["documents_encoded"] == len(tiny_train.corpus)


def test_a_pool_encode_never_stands_in_for_the_full_corpus_in_the_embedding_cache(tiny_train, tmp_path):
    refresher, encoder = _refresher(tiny_train, tmp_path, "p", tiny_config(every=1, scope="pool", scope_depth=5),
                                    run_dir=True)
    refresher.stale_documents = None  # the candidates' pool, which _pool_rows names
    entry = refresher.refresh(1)
    assert entry["scope"] == "pool"
    dense, run_dir = refresher.dense, refresher.miner.run_dir
    assert dense.cached_embeddings(tiny_train, run_dir) is None  # no full-corpus file for these weights
    before = encoder.texts_encoded
    dense.embed(tiny_train, run_dir=run_dir, show_progress=False)  # same weights, whole corpus
    assert encoder.texts_encoded - before == len(tiny_train.corpus)  # all encoded (the queries were cached)
    before = encoder.texts_encoded
    refresher.miner.mine(scoped_data(tiny_train, _pool_rows(refresher)), save_report=False)
    assert encoder.texts_encoded == before  # the pool's own file is found again under its own key


def test_resume_from_a_checkpoint_continues_exactly_as_the_uninterrupted_run(tiny_train, tmp_path):
    config = tiny_config(every=1, scope="pool", scope_depth=5, full_every=3)
    whole, encoder = _refresher(tiny_train, tmp_path, "a", config)
    for step in (1, 2, 3, 4):
        whole.refresh(step)
        if step == 4:
            whole.save(tmp_path / "ckpt")
            salt, pool_at_4 = encoder.salt, whole.scope_candidates.copy()
    for step in (5, 6, 7):
        whole.refresh(step)
    resumed, _ = _refresher(tiny_train, tmp_path, "b", config, DriftingEncoder(salt=salt))
    resumed.load(tmp_path / "ckpt")
    assert resumed.refreshes_started == 4 and resumed.scope_candidates.tolist() == pool_at_4.tolist()
    for step in (5, 6, 7):
        resumed.refresh(step)
    assert resumed.pool.negatives == whole.pool.negatives
    assert [_same_fields(e) for e in resumed.history] == [_same_fields(e) for e in whole.history]
    assert [e["scope"] for e in resumed.history] == ["pool", "pool", "full", "pool", "pool", "full", "pool"]


def test_scope_settings_are_checked(tiny_train):
    with pytest.raises(HardnegError, match="scope must be one of"):
        RefreshConfig(scope="half")
    with pytest.raises(HardnegError, match="full_every"):
        RefreshConfig(full_every=0)
    miner = Miner(DenseRetriever(DriftingEncoder()), SelectionConfig(num_negatives=1), depth=30, show_progress=False)
    pool = pool_from_selection(tiny_train, miner.mine(tiny_train).selection)
    with pytest.raises(HardnegError, match="exceeds the miner's depth 30"):
        Refresher(miner, tiny_train, pool, RefreshConfig(scope="pool", scope_depth=31))
    # the default: pool scope, 30 documents per query, or the miner's depth when it is smaller
    assert RefreshConfig().scope == "pool" and Refresher(miner, tiny_train, pool, RefreshConfig()).scope_depth == 30
    shallow = Miner(DenseRetriever(DriftingEncoder()), SelectionConfig(num_negatives=1), depth=12, show_progress=False)
    refresher = Refresher(shallow, tiny_train, pool, RefreshConfig(), candidates=shallow.mine(tiny_train).candidates)
    assert refresher.scope_depth == 12 and refresher.scope_candidates.shape[1] == 12


def test_async_pool_refresh_applies_what_a_sync_one_would_mine_from_the_snapshot(tiny_train, tmp_path):
    config = tiny_config(every=1, asynchronous=True, scope="pool", scope_depth=5)
    refresher, encoder = _refresher(tiny_train, tmp_path, "a", config, SnapshotEncoder())
    refresher.snapshot_dir = tmp_path / "snaps"
    sync, _ = _refresher(tiny_train, tmp_path, "s", tiny_config(every=1, scope="pool", scope_depth=5),
                         DriftingEncoder())
    encoder.forget_key()  # the weights the snapshot is taken from (a sync refresh forgets once too)
    refresher.start_async(step=2)
    encoder.forget_key()  # training moves on while the worker mines
    entry = refresher.poll(step=3, wait=True)
    expected = sync.refresh(2)  # same weights as the snapshot: one forget_key from the start
    assert entry["scope"] == "pool" and entry["documents_encoded"] == expected["documents_encoded"]
    assert entry["documents_encoded"] < len(tiny_train.corpus) and "dev_ndcg@10" not in entry
    assert refresher.pool.negatives == sync.pool.negatives


def test_after_an_async_full_refresh_the_pool_falls_back_to_the_candidates(tiny_train, tmp_path):
    config = tiny_config(every=1, asynchronous=True, scope="pool", scope_depth=5, full_every=1)
    refresher, encoder = _refresher(tiny_train, tmp_path, "a", config, SnapshotEncoder(), run_dir=True)
    refresher.snapshot_dir = tmp_path / "snaps"
    assert refresher.stale_documents is not None  # the first mining ran here, into the run directory
    refresher.start_async(step=1)  # full (every refresh is): the worker embeds with its snapshot
    entry = refresher.poll(step=2, wait=True)
    assert entry["scope"] == "full"
    assert refresher.stale_documents is None  # not this process's files: no stale index to search
    assert refresher.scope_candidates is not None  # the next pool comes from the worker's candidates


def test_a_pool_over_pool_at_most_of_the_corpus_is_refreshed_in_full(tiny_train, tmp_path):
    """Past ``pool_at_most`` of the corpus (default: half) a pool refresh is full instead: it costs about as
    much and renews the pool. At the bound itself it stays a pool."""
    wide, _ = _refresher(tiny_train, tmp_path, "wide", RefreshConfig(every=1, scope="pool", scope_depth=30))
    assert len(_pool_rows(wide)) > 0.5 * len(tiny_train.corpus)  # every query's 30 nearest: most of 210
    entry = wide.refresh(step=1)
    assert entry["scope"] == "full" and entry["documents_encoded"] == len(tiny_train.corpus)
    probe, _ = _refresher(tiny_train, tmp_path, "probe", RefreshConfig(every=1, scope="pool", scope_depth=2))
    share = len(_pool_rows(probe)) / len(tiny_train.corpus)
    for bound, scope in ((share, "pool"), (share - 1 / len(tiny_train.corpus), "full")):
        refresher, _ = _refresher(tiny_train, tmp_path, f"at-{bound}", RefreshConfig(
            every=1, scope="pool", scope_depth=2, pool_at_most=bound))
        assert refresher.refresh(step=1)["scope"] == scope, bound
    for bad in (0.0, 1.5):
        with pytest.raises(HardnegError, match="pool_at_most is a share of the corpus"):
            RefreshConfig(pool_at_most=bad)
