"""Negative pools: building, swapping, persistence, and training files written by `hardneg mine`."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.text import text_keys
from hardneg.train.files import pool_from_file
from hardneg.train.pool import NegativePool, pool_from_selection, pool_in_batch_only
from hardneg.train.staleness import overlap_at_k, top_k_keys


@pytest.fixture(scope="module")
def mined(tiny_train):
    from hardneg.mine import Miner
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.select import SelectionConfig

    return Miner(BM25Retriever(), SelectionConfig(num_negatives=2), show_progress=False).mine(tiny_train).selection


def test_pool_from_selection_has_one_example_per_query_positive(tiny_train, mined):
    pool = pool_from_selection(tiny_train, mined)
    expected = sum(len(tiny_train.positives[q]) for q in mined.query_rows.tolist())
    assert len(pool) == expected and pool.num_negatives == 2
    i = 0
    q = int(mined.query_rows[0])
    assert pool.anchors[i] == tiny_train.queries.texts[q]
    assert pool.negatives[i] == [tiny_train.corpus.passages[d] for d in mined.negatives[0].tolist()]


def test_in_batch_only_pool_has_no_negatives(tiny_train):
    pool = pool_in_batch_only(tiny_train)
    assert pool.num_negatives == 0 and set(pool.row(0)) == {"anchor", "positive"}


def test_swap_counts_changed_slots_and_save_load_round_trip(tmp_path):
    pool = NegativePool(["a", "b"], ["pa", "pb"], [["x", "y"], ["z", "w"]], np.arange(2),
                        [text_keys(["pa"]), text_keys(["pb"])], np.arange(2))
    assert pool.swap({0: ["x", "new"]}) == pytest.approx(1 / 4)
    assert pool.negatives == [["x", "new"], ["z", "w"]] and pool.version == 1
    pool.save_negatives(tmp_path / "neg.json")
    other = NegativePool(["a", "b"], ["pa", "pb"], [["x", "y"], ["z", "w"]], np.arange(2),
                         [text_keys(["pa"]), text_keys(["pb"])], np.arange(2))
    other.load_negatives(tmp_path / "neg.json")
    assert other.negatives == pool.negatives and other.version == 1
    stranger = NegativePool(["c", "b"], ["pa", "pb"], [["x", "y"], ["z", "w"]], np.arange(2),
                            [text_keys(["pa"]), text_keys(["pb"])], np.arange(2))
    with pytest.raises(HardnegError, match="other training examples"):
        stranger.load_negatives(tmp_path / "neg.json")


def test_a_negative_equal_to_its_own_positive_is_refused():
    with pytest.raises(HardnegError, match="equals one of its positives"):
        NegativePool(["a"], ["pa"], [["PA "]], np.zeros(1, np.int64), [text_keys(["pa"])], np.zeros(1, np.int64))


def test_overlap_at_k_by_hand():
    passages = ["p0", "p1", "p2", "p3", "p4", "p5", "P1 "]  # row 6 is row 1's text again
    top = top_k_keys(np.array([[1, 2, 3], [4, 5, -1], [0, 2, 3]], np.int32), text_keys(passages))
    assert [len(keys) for keys in top] == [3, 2, 3]  # the empty slot is left out
    in_use = [text_keys(["p1", "p0"]), text_keys(["P5"]), np.empty(0, np.int64)]
    assert overlap_at_k(in_use, top) == pytest.approx((0.5 + 1.0) / 2)
    assert overlap_at_k([text_keys(["p1"])], top_k_keys(np.array([[6, -1]]), text_keys(passages))) == 1.0  # same text, other row
    assert np.isnan(overlap_at_k([np.empty(0, np.int64)], top[:1]))


@pytest.mark.parametrize("fmt", ["triplet", "n-tuple", "flag", "ids"])
def test_pool_from_each_exported_format_holds_the_selection(tmp_path, tiny_train, mined, fmt):
    from hardneg.export import export

    path = export(tiny_train, mined, tmp_path / f"train.{fmt}.jsonl", fmt, with_scores=fmt != "ids")
    pool = pool_from_file(path, tiny_train)
    want = {
        (tiny_train.queries.texts[q], tiny_train.corpus.passages[p], tiny_train.corpus.passages[n])
        for i, q in enumerate(mined.query_rows.tolist())
        for p in tiny_train.positives[q].tolist()
        for n in mined.negatives[i].tolist()
    }
    got = {(a, p, n) for a, p, negs in zip(pool.anchors, pool.positives, pool.negatives) for n in negs}
    assert got == want
    assert (pool.query_rows >= 0).all()


def test_scores_become_margin_labels_and_unknown_formats_are_refused(tmp_path, tiny_train, mined):
    from hardneg.export import export

    path = export(tiny_train, mined, tmp_path / "s.jsonl", "n-tuple", with_scores=True)
    pool = pool_from_file(path, tiny_train, with_scores=True)
    assert pool.scores.shape == (len(pool), 3)
    np.testing.assert_allclose(pool.scores[0, 1:], mined.scores[0], rtol=1e-6)
    bad = export(tiny_train, mined, tmp_path / "l.jsonl", "labeled-pair")
    with pytest.raises(HardnegError, match="Cannot train from a file"):
        pool_from_file(bad, tiny_train)
    plain = export(tiny_train, mined, tmp_path / "p.jsonl", "n-tuple")
    with pytest.raises(HardnegError, match="without scores"):
        pool_from_file(plain, tiny_train, with_scores=True)


def test_swap_keeps_old_negatives_when_new_ones_copy_a_positive():
    pool = NegativePool(["a", "b"], ["pa", "pb"], [["x"], ["z"]], np.arange(2),
                        [text_keys(["pa"]), text_keys(["pb"])], np.arange(2))
    assert pool.swap({0: ["PA"], 1: ["new"]}) == pytest.approx(1 / 2)
    assert pool.negatives == [["x"], ["new"]]
