"""ANCE refresh: re-mining with changed weights, staleness, dev metrics, checkpoint and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FakeEncoder

from hardneg.errors import HardnegError
from hardneg.mine import Miner
from hardneg.retrieve.bm25 import BM25Retriever
from hardneg.retrieve.dense import DenseRetriever
from hardneg.select import SelectionConfig
from hardneg.train.pool import pool_from_selection
from hardneg.train.refresh import DevEvaluator, RefreshConfig, Refresher


class DriftingEncoder(FakeEncoder):
    """A fake whose 'weights' change: forget_key() moves to new hash buckets (so embeddings change)."""

    def forget_key(self) -> None:
        self.salt += "+"


@pytest.fixture(scope="module")
def tiny_dev():
    from conftest import TINY

    from hardneg.data import load_beir

    return load_beir(TINY, "dev")


def mined_refresher(encoder, config, tmp_path, train, dev_data):
    """Two dense negatives per query mined with ``encoder``; the pool, its negatives as mined, and a refresher
    (dev nDCG on 10 queries, log in ``tmp_path/log.jsonl``)."""
    dense = DenseRetriever(encoder)
    miner = Miner(dense, SelectionConfig(num_negatives=2), run_dir=tmp_path / "run", show_progress=False)
    pool = pool_from_selection(train, miner.mine(train).selection)
    before = [list(n) for n in pool.negatives]
    dev = DevEvaluator(dense, dev_data, miner.run_dir, max_queries=10)
    return pool, before, Refresher(miner, train, pool, config, dev=dev, log_path=tmp_path / "log.jsonl")


def test_refresh_swaps_negatives_and_logs_staleness_and_dev_metrics(tmp_path, tiny_train, tiny_dev):
    encoder = DriftingEncoder()
    pool, before, refresher = mined_refresher(encoder, RefreshConfig(every=1, staleness_k=5), tmp_path, tiny_train,
                                              tiny_dev)
    miner = refresher.miner
    entry = refresher.refresh(step=7)
    assert pool.version == 1 and pool.negatives != before
    assert entry["negatives_changed"] == pytest.approx(
        sum(a != b for x, y in zip(before, pool.negatives) for a, b in zip(x, y)) / (len(pool) * 2))
    assert 0 < entry["staleness"] <= 1 and entry["staleness"] == pytest.approx(1 - entry["overlap@5"])
    assert 0 <= entry["dev_ndcg@10"] <= 1 and entry["step"] == 7
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["step"] == 7
    # the new negatives are what the same miner selects for the drifted weights
    candidates = miner.candidates(tiny_train)[0]
    again = miner.select(tiny_train, candidates)
    passages = tiny_train.corpus.passages
    assert pool.negatives[0] == [passages[d] for d in again.negatives[0].tolist()]
    # staleness by hand: the share of each query's old negatives among its new top 5 passages
    top5 = [{passages[d] for d in row[:5] if d >= 0} for row in candidates.doc_ids.tolist()]
    first = {q: i for i, q in reversed(list(enumerate(pool.query_rows.tolist())))}
    by_hand = np.mean([np.mean([t in top5[q] for t in before[i]]) for q, i in first.items()])
    assert entry["overlap@5"] == pytest.approx(by_hand, abs=1e-6)
    # staleness right after a refresh: the negatives in use are the current model's own
    assert refresher.refresh(step=8)["staleness"] > 0  # drifted again
    refresher.save(tmp_path / "ckpt")
    other = Refresher(miner, tiny_train, pool_from_selection(tiny_train, miner.mine(tiny_train).selection),
                      RefreshConfig(every=1))
    other.load(tmp_path / "ckpt")
    assert other.pool.negatives == pool.negatives and [e["step"] for e in other.history] == [7, 8]


def test_refresh_needs_a_dense_encoder_that_follows_the_weights(tiny_train):
    bm25 = Miner(BM25Retriever(), SelectionConfig(num_negatives=1), show_progress=False)
    pool = pool_from_selection(tiny_train, bm25.mine(tiny_train).selection)
    with pytest.raises(HardnegError, match="dense or hybrid"):
        Refresher(bm25, tiny_train, pool, RefreshConfig(every=2))
    frozen = Miner(DenseRetriever(FakeEncoder()), SelectionConfig(num_negatives=1), show_progress=False)
    with pytest.raises(HardnegError, match="forget_key"):
        Refresher(frozen, tiny_train, pool, RefreshConfig(every=2)).refresh(1)
    with pytest.raises(HardnegError, match="at least 1"):
        RefreshConfig(every=0)


@pytest.fixture
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread is several times faster than two fighting
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_tiny_training_with_two_refreshes_then_resume(tmp_path, tiny_train, tiny_dev, minilm_path, one_thread):
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerCallback

    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.runtime import state_dict_fingerprint
    from hardneg.train import TrainConfig, train

    def setup():
        model = SentenceTransformer(minilm_path)
        encoder = SentenceTransformerEncoder(model, max_length=32, precision="fp32")
        miner = Miner(DenseRetriever(encoder), SelectionConfig(num_negatives=1), run_dir=tmp_path / "run",
                      show_progress=False)
        return model, miner, pool_from_selection(tiny_train, miner.mine(tiny_train).selection)

    class Steps(TrainerCallback):
        def __init__(self):
            self.steps, self.start_weights = [], None

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if self.start_weights is None:
                self.start_weights = state_dict_fingerprint(model)

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    config = TrainConfig(batch_size=8, max_steps=6, max_length=32, learning_rate=2e-4, save_steps=4,
                         save_total_limit=None, logging_steps=1, precision="fp32")
    model, miner, pool = setup()
    initial = [list(n) for n in pool.negatives]
    steps = Steps()
    result = train(model, pool, tmp_path / "out", config, miner=miner, data=tiny_train,
                   refresh=RefreshConfig(every=2, dev_max_queries=10, scope="pool", pool_at_most=1.0), dev_data=tiny_dev,
                   callbacks=[steps], show_progress=False)
    assert steps.steps == [1, 2, 3, 4, 5, 6] and result.steps == 6
    refreshes = [e for e in result.history if e["kind"] == "refresh"]
    assert [e["step"] for e in refreshes] == [2, 4]  # none at the last step
    assert pool.version == 2 and pool.negatives != initial
    assert any(e["negatives_changed"] > 0 for e in refreshes)
    for e in refreshes:
        assert 0 <= e["staleness"] <= 1 and e["seconds"] > 0
    # no candidates given: the first refresh is full (and evaluates on dev), the next re-encodes its pool only
    assert [e["scope"] for e in refreshes] == ["full", "pool"]
    assert 0 <= refreshes[0]["dev_ndcg@10"] <= 1 and "dev_ndcg@10" not in refreshes[1]
    assert refreshes[0]["documents_encoded"] == len(tiny_train.corpus) > refreshes[1]["documents_encoded"]
    # the pool refresh mines only the queries of the two batches (every=2) the sampler hands out next
    assert refreshes[0]["queries_mined"] == len(tiny_train.queries) > 2 * 8 >= refreshes[1]["queries_mined"] > 0
    assert [e["kind"] for e in result.history] == ["start", "refresh", "refresh", "end"]
    assert (result.model_path / "config.json").exists()
    ckpt = tmp_path / "out" / "checkpoint-4"
    saved = json.loads((ckpt / "hardneg_negatives.json").read_text())
    assert saved["pool_version"] == 2  # the step-4 refresh ran before the step-4 checkpoint

    # resume from checkpoint-4: restored negatives and history, only steps 5 and 6 run
    model2, miner2, pool2 = setup()
    steps2 = Steps()
    resumed = train(model2, pool2, tmp_path / "out", config, miner=miner2, data=tiny_train,
                    refresh=RefreshConfig(every=2, dev_max_queries=10, scope="pool", pool_at_most=1.0), dev_data=tiny_dev,
                    callbacks=[steps2],
                    resume_from_checkpoint=ckpt, show_progress=False)
    assert steps2.steps == [5, 6] and resumed.steps == 6
    assert pool2.version == 2 and pool2.negatives == saved["negatives"]
    assert [e["step"] for e in resumed.history if e["kind"] == "refresh"] == [2, 4]
    # step 5 started from the checkpoint's weights, not from the fresh model's
    assert steps2.start_weights == state_dict_fingerprint(SentenceTransformer(str(ckpt)))
    assert steps2.start_weights != steps.start_weights


class SnapshotEncoder(DriftingEncoder):
    """A drifting fake that can be frozen: the snapshot keeps the salt ('weights') of its moment."""

    def snapshot(self, folder):
        from pathlib import Path

        Path(folder).mkdir(parents=True, exist_ok=True)
        return SnapshotEncoder(self.dim, self.salt)


def test_async_refresh_applies_negatives_mined_from_the_snapshot_not_the_later_weights(tmp_path, tiny_train,
                                                                                      tiny_dev):
    encoder = SnapshotEncoder()
    pool, before, refresher = mined_refresher(encoder, RefreshConfig(every=1, asynchronous=True), tmp_path,
                                              tiny_train, tiny_dev)
    encoder.forget_key()  # the weights the snapshot is taken from
    snapshot_salt = encoder.salt
    refresher.start_async(step=3)
    with pytest.raises(HardnegError, match="still running"):
        refresher.start_async(step=4)
    encoder.forget_key()  # training moves on while the worker mines
    assert pool.version == 0  # nothing swapped before the worker is done
    entry = refresher.poll(step=5, wait=True)
    assert entry["step"] == 3 and entry["applied_step"] == 5 and entry["asynchronous"] is True
    assert 0 <= entry["dev_ndcg@10"] <= 1 and 0 <= entry["staleness"] <= 1
    assert pool.version == 1 and pool.negatives != before
    frozen = Miner(DenseRetriever(SnapshotEncoder(salt=snapshot_salt)), SelectionConfig(num_negatives=2),
                   show_progress=False)
    expected = frozen.mine(tiny_train).selection
    assert pool.negatives[0] == [tiny_train.corpus.passages[d] for d in expected.negatives[0].tolist()]
    assert refresher.poll(step=6) is None and refresher.pending is None
    assert not (tmp_path / "refresh-snapshots" / "step-3").exists()  # the snapshot is cleaned up


def test_async_refresh_still_running_at_the_end_is_discarded_and_logged(tmp_path, tiny_train):
    encoder = SnapshotEncoder()
    miner = Miner(DenseRetriever(encoder), SelectionConfig(num_negatives=1), show_progress=False)
    pool = pool_from_selection(tiny_train, miner.mine(tiny_train).selection)
    before = [list(n) for n in pool.negatives]
    refresher = Refresher(miner, tiny_train, pool, RefreshConfig(every=1, asynchronous=True),
                          snapshot_dir=tmp_path / "snaps")
    refresher.start_async(step=2)
    refresher.cancel(step=3)
    assert refresher.history == [{"kind": "refresh-discarded", "step": 2, "applied_step": None, "ended_at_step": 3}]
    assert pool.negatives == before and not (tmp_path / "snaps" / "step-2").exists()


def test_async_refresh_needs_a_snapshotting_encoder(tmp_path, tiny_train):
    miner = Miner(DenseRetriever(DriftingEncoder()), SelectionConfig(num_negatives=1), show_progress=False)
    pool = pool_from_selection(tiny_train, miner.mine(tiny_train).selection)
    refresher = Refresher(miner, tiny_train, pool, RefreshConfig(every=1, asynchronous=True),
                          snapshot_dir=tmp_path)
    with pytest.raises(HardnegError, match="snapshot"):
        refresher.start_async(step=1)


@pytest.mark.slow
def test_tiny_training_with_async_refresh_swaps_negatives_from_snapshots(tmp_path, tiny_train, tiny_dev,
                                                                        minilm_path, one_thread):
    from sentence_transformers import SentenceTransformer

    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.train import TrainConfig, train

    model = SentenceTransformer(minilm_path)
    encoder = SentenceTransformerEncoder(model, max_length=32, precision="fp32")
    miner = Miner(DenseRetriever(encoder), SelectionConfig(num_negatives=1), run_dir=tmp_path / "run",
                  show_progress=False)
    pool = pool_from_selection(tiny_train, miner.mine(tiny_train).selection)
    initial = [list(n) for n in pool.negatives]
    config = TrainConfig(batch_size=8, max_steps=6, max_length=32, learning_rate=2e-4, logging_steps=1,
                         precision="fp32")
    result = train(model, pool, tmp_path / "out", config, miner=miner, data=tiny_train,
                   refresh=RefreshConfig(every=2, dev_max_queries=10, asynchronous=True), dev_data=tiny_dev,
                   show_progress=False)
    kinds = [e["kind"] for e in result.history]
    assert kinds[0] == "start" and kinds[-1] == "end"
    applied = [e for e in result.history if e["kind"] == "refresh"]
    # the step-2 snapshot must be applied by step 4 at the latest (the next refresh waits for it)
    assert applied[0]["step"] == 2 and 2 < applied[0]["applied_step"] <= 4
    assert applied[0]["asynchronous"] and 0 <= applied[0]["dev_ndcg@10"] <= 1
    # the step-4 one is applied by the end, or discarded because training ended first
    assert [e["step"] for e in result.history if e["kind"] in ("refresh", "refresh-discarded")] == [2, 4]
    assert pool.version == len(applied) and pool.negatives != initial
    assert not list((tmp_path / "out" / "refresh-snapshots").glob("step-*"))
