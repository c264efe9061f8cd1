"""Topic-aware batching: clusters, the topic-by-topic visit order, and batches that keep the rules."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.text import text_keys
from hardneg.train.pool import NegativePool
from hardneg.train.sampler import iter_batches, violations
from hardneg.train.topics import topic_clusters, topic_order


def two_blobs(n_each: int = 20, seed: int = 0) -> np.ndarray:
    """Unit vectors near axis 0 (rows < n_each) and near axis 1 (the rest)."""
    rng = np.random.default_rng(seed)
    centres = np.repeat(np.eye(8, dtype=np.float32)[:2], n_each, axis=0)
    points = centres + 0.05 * rng.standard_normal(centres.shape).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_topic_clusters_finds_two_obvious_groups():
    labels = topic_clusters(two_blobs(), 2, seed=0)
    assert labels.dtype == np.int64 and labels.shape == (40,)
    assert len(set(labels[:20].tolist())) == 1 and len(set(labels[20:].tolist())) == 1
    assert labels[0] != labels[20]


def test_topic_clusters_caps_the_count_and_refuses_bad_input():
    assert set(topic_clusters(two_blobs(n_each=2), 10).tolist()) <= set(range(4))  # at most one topic per row
    assert topic_clusters(two_blobs(), 1).tolist() == [0] * 40
    with pytest.raises(HardnegError, match="at least 1"):
        topic_clusters(two_blobs(), 0)
    with pytest.raises(HardnegError, match="non-empty"):
        topic_clusters(np.zeros((0, 8), dtype=np.float32), 2)


def test_topic_order_is_a_permutation_with_each_topic_contiguous():
    topics = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 2])
    seen_sequences = set()
    for seed in range(8):
        order = topic_order(topics, np.random.default_rng(seed))
        assert sorted(order.tolist()) == list(range(len(topics)))
        sequence = topics[order]
        assert np.count_nonzero(np.diff(sequence)) == 2  # three runs: one per topic
        seen_sequences.add(tuple(sequence.tolist()))
    assert len(seen_sequences) > 1  # the topics' order is shuffled too


def hand_pool(n: int = 8) -> NegativePool:
    anchors = [f"q{i}" for i in range(n)]
    positives = [f"p{i}" for i in range(n)]
    return NegativePool(anchors, positives, [[] for _ in range(n)], np.arange(n), [text_keys([p]) for p in positives],
                        np.arange(n))


@pytest.mark.parametrize("seed", range(4))
def test_topics_that_fill_whole_batches_give_single_topic_batches(seed):
    topics = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    batches = list(iter_batches(hand_pool(), 4, np.random.default_rng(seed), topics))
    assert len(batches) == 2
    for batch in batches:
        assert len(set(topics[batch].tolist())) == 1 and violations(hand_pool(), batch) == []


def test_topic_labels_must_align_with_the_pool():
    with pytest.raises(HardnegError, match="must align"):
        next(iter_batches(hand_pool(), 4, np.random.default_rng(0), np.zeros(3, dtype=np.int64)))


def test_topic_batches_group_similar_queries(tiny_train, fake_encoder):
    """In-batch only on the tiny sample: batch-mates' queries are much closer than in random batches."""
    from hardneg.train.pool import pool_in_batch_only

    pool = pool_in_batch_only(tiny_train)
    queries = fake_encoder.encode_queries(pool.anchors)
    topics = topic_clusters(queries, len(pool) // 8, seed=0)

    def mean_batch_mate_similarity(batches) -> float:
        return float(np.mean([queries[i] @ queries[j] for b in batches for i in b for j in b if i != j]))

    random_batches, topic_batches = [], []
    for seed in range(5):
        random_batches += list(iter_batches(pool, 8, np.random.default_rng(seed)))
        topic_batches += list(iter_batches(pool, 8, np.random.default_rng(seed), topics))
    assert len(topic_batches) == len(random_batches)
    assert mean_batch_mate_similarity(topic_batches) > 1.5 * mean_batch_mate_similarity(random_batches)


def test_topic_batches_of_a_mined_pool_keep_both_rules(mine_tiny_pool, fake_encoder):
    pool = mine_tiny_pool(3)
    topics = topic_clusters(fake_encoder.encode_queries(pool.anchors), len(pool) // 8, seed=0)
    batches = list(iter_batches(pool, 8, np.random.default_rng(0), topics))
    assert batches
    for batch in batches:
        assert len(batch) == 8 and violations(pool, batch) == []


class RecordingModel:
    """Stands in for a SentenceTransformer: encodes with the fake encoder, counts calls."""

    def __init__(self, encoder):
        self.encoder, self.calls = encoder, 0

    def encode(self, texts, **_):
        self.calls += 1
        return self.encoder.encode_queries(texts)


def test_topics_are_saved_and_a_resumed_run_reuses_them(tmp_path, mine_tiny_pool, fake_encoder):
    from hardneg.store import save_npy
    from hardneg.train.trainer import TOPICS_FILE, TrainConfig, _topics

    pool = mine_tiny_pool(1)
    config = TrainConfig(batch_size=8, batching="topic")
    model = RecordingModel(fake_encoder)
    first = _topics(model, pool, config, tmp_path, reuse=False, show_progress=False)
    assert first.shape == (len(pool),) and int(first.max()) + 1 <= len(pool) // 8
    assert np.array_equal(np.load(tmp_path / TOPICS_FILE), first)
    save_npy(tmp_path / TOPICS_FILE, np.zeros(len(pool), dtype=np.int64))  # what an earlier run saved
    assert _topics(model, pool, config, tmp_path, reuse=True, show_progress=False).tolist() == [0] * len(pool)
    assert model.calls == 1  # resumed: nothing encoded
    assert _topics(model, pool, TrainConfig(batch_size=8), tmp_path, reuse=False, show_progress=False) is None
    with pytest.raises(HardnegError, match="random or topic"):
        TrainConfig(batching="cluster")
