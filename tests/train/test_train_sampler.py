"""The batch sampler's two rules, on hand-made and mined pools."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.text import text_keys
from hardneg.train.pool import NegativePool
from hardneg.train.sampler import compatible, exact_batches, iter_batches, violations


def hand_pool() -> NegativePool:
    """Six examples; q0 and q1 share positive "P-shared"; q2's negative is q3's positive."""
    anchors = ["q0", "q1", "q2", "q3", "q4", "q5"]
    positives = ["P-shared", "P-shared", "p2", "p3", "p4", "p5"]
    negatives = [["n0"], ["n1"], ["p3"], ["n3"], ["n4"], ["n0"]]
    group_pos = [["P-shared"], ["P-shared"], ["p2"], ["p3"], ["p4"], ["p5"]]
    return NegativePool(anchors, positives, negatives, np.arange(6), [text_keys(g) for g in group_pos], np.arange(6))


def test_violations_finds_each_rule_broken_by_hand():
    pool = hand_pool()
    assert any("repeated" in v for v in violations(pool, [0, 5]))  # both carry "n0"
    assert any("positive" in v for v in violations(pool, [0, 1]))  # shared positive
    assert any("positive of example 3" in v for v in violations(pool, [2, 3]))  # q2's negative is q3's positive
    assert violations(pool, [0, 2, 4]) == []


def test_compatible_rejects_an_example_whose_positive_is_already_a_batch_text():
    keys = text_keys(["a", "b", "n"])
    assert not compatible(keys, text_keys(["b"]), set(text_keys(["b"]).tolist()), set())
    assert compatible(keys, text_keys(["b"]), set(text_keys(["x"]).tolist()), set())


@pytest.mark.parametrize("seed", range(5))
def test_every_batch_of_the_hand_pool_obeys_both_rules(seed):
    pool = hand_pool()
    batches = list(iter_batches(pool, 2, np.random.default_rng(seed)))
    assert batches, "the pool fills at least one batch"
    for batch in batches:
        assert len(batch) == 2
        assert violations(pool, batch) == []
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used))


def test_batches_of_a_mined_pool_obey_both_rules_and_cover_most_examples(mine_tiny_pool):
    for k, size in ((3, 16), (1, 8)):
        pool = mine_tiny_pool(k)
        batches = list(iter_batches(pool, size, np.random.default_rng(0)))
        for batch in batches:
            assert len(batch) == size and violations(pool, batch) == []
    # one negative, batch 8: the rules leave few examples out (tiny's 210 documents are tightly clustered)
    assert sum(map(len, batches)) >= 0.9 * len(pool)


def test_batches_follow_negatives_swapped_mid_epoch(mine_tiny_pool):
    pool = mine_tiny_pool(1)
    it = iter_batches(pool, 8, np.random.default_rng(0))
    first = next(it)
    # make every example's negative the positive of query row 0: only its own group may still use it... and
    # the sampler must never place that text beside query 0's examples or twice in one batch
    target = pool.positives[int(np.flatnonzero(pool.query_rows == pool.query_rows[first[0]])[0])]
    q0 = int(pool.query_rows[first[0]])
    pool.swap({int(q): [target] for q in set(pool.query_rows.tolist()) if q != q0})
    for batch in it:
        assert violations(pool, batch) == []
        assert sum(target in pool.negatives[i] for i in batch) <= 1


def test_same_seed_same_batches_and_short_pool_errors(mine_tiny_pool):
    from hardneg.train.sampler import make_batch_sampler

    pool = mine_tiny_pool()
    a = list(iter_batches(pool, 8, np.random.default_rng(3)))
    b = list(iter_batches(pool, 8, np.random.default_rng(3)))
    assert a == b
    sampler = make_batch_sampler(pool, 8, seed=1)
    e0 = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != e0
    assert len(sampler) == len(e0) == len(list(sampler))
    with pytest.raises(HardnegError, match="lower --batch-size"):
        make_batch_sampler(pool, len(pool) + 1, seed=0)


def repetitive_pool() -> NegativePool:
    """Twelve examples; the first eight share the negative "n", so a batch holds at most one of them."""
    anchors = [f"q{i}" for i in range(12)]
    positives = [f"p{i}" for i in range(12)]
    negatives = [["n"] if i < 8 else [f"n{i}"] for i in range(12)]
    return NegativePool(anchors, positives, negatives, np.arange(12), [text_keys([p]) for p in positives],
                        np.arange(12))


@pytest.mark.parametrize("seed", range(4))
def test_sampler_length_is_the_number_of_batches_each_epoch_yields_when_negatives_repeat(seed):
    from hardneg.train.sampler import make_batch_sampler

    pool = repetitive_pool()
    sampler = make_batch_sampler(pool, 3, seed=seed)
    # a batch of 3 holds at most one "n" example, so at most 4 batches (12 // 3) and in practice fewer
    assert len(sampler) < len(pool) // 3
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(len(b) == 3 and violations(pool, b) == [] for b in batches)


def test_exact_batches_tops_up_an_epoch_cut_short_by_swapped_negatives():
    pool = NegativePool([f"q{i}" for i in range(8)], [f"p{i}" for i in range(8)], [[f"n{i}"] for i in range(8)],
                        np.arange(8), [text_keys([f"p{i}"]) for i in range(8)], np.arange(8))
    it = exact_batches(pool, 2, 4, np.random.default_rng(0))
    first = next(it)
    pool.swap({i: ["n"] for i in range(6)})  # now only examples 6, 7 and one "n" example fit per batch
    rest = list(it)
    assert len(first) == 2 and len(rest) == 3
    assert all(violations(pool, b) == [] for b in rest)
    assert len(list(exact_batches(pool, 2, 2, np.random.default_rng(1)))) == 2  # a longer plan is cut


def test_max_steps_trains_that_many_steps_with_repetitive_negatives(tmp_path, tiny_model):
    import torch
    from sentence_transformers import SentenceTransformer

    from hardneg.train.trainer import TrainConfig, train

    pool = repetitive_pool()
    model = SentenceTransformer(tiny_model, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(model, pool, tmp_path, TrainConfig(batch_size=3, max_steps=5, max_length=16, precision="fp32"),
                       show_progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result.steps == 5


def test_upcoming_predicts_exactly_the_next_batches_across_epochs_when_nothing_conflicts():
    from hardneg.train.sampler import make_batch_sampler

    pool = NegativePool([f"q{i}" for i in range(10)], [f"p{i}" for i in range(10)], [[f"n{i}"] for i in range(10)],
                        np.arange(10), [text_keys([f"p{i}"]) for i in range(10)], np.arange(10))
    sampler = make_batch_sampler(pool, 2, seed=7)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    flat = [b for batches in epochs for b in batches]
    assert len(flat) == 15
    sampler.set_epoch(0)
    assert sampler.upcoming(7).tolist() == [i for b in flat[:7] for i in b]  # before the first batch
    it = iter(sampler)
    for drawn in range(1, 5):
        next(it)
        # from mid-epoch 0 on into epoch 1's order (which set_epoch(1) will replay)
        assert sampler.upcoming(4).tolist() == [i for b in flat[drawn:drawn + 4] for i in b]


def test_upcoming_skips_what_was_handed_out_and_keeps_the_examples_a_conflict_deferred():
    from hardneg.train.sampler import make_batch_sampler

    pool = repetitive_pool()  # a batch holds at most one of examples 0-7, so the others wait
    sampler = make_batch_sampler(pool, 3, seed=0)
    it = iter(sampler)
    drawn = set(next(it))
    ahead = sampler.upcoming(4).tolist()  # 12 examples: this epoch's 9 left, then the next epoch's first 3
    assert set(ahead[:9]) == set(range(12)) - drawn
    assert len(ahead) == 12 and set(ahead[9:]) <= set(range(12))
