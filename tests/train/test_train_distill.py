"""Listwise distillation: the loss against a hand computation, its rules, and teacher scores in the pool."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hardneg.errors import HardnegError

torch = pytest.importorskip("torch")


def _loss(q, docs, teacher, *, scale=1.0, weight=1.0, temperature=1.0):
    from hardneg.train.distill import listwise_distill_loss

    return listwise_distill_loss(torch.tensor(q, dtype=torch.float32), torch.tensor(docs, dtype=torch.float32),
                                 torch.tensor(teacher, dtype=torch.float32), scale=scale, weight=weight,
                                 teacher_temperature=temperature)


# two queries on the unit circle; per query [positive, one candidate]; all vectors unit length
Q = [[1.0, 0.0], [0.0, 1.0]]
DOCS = [[[1.0, 0.0], [0.0, 1.0]],
        [[0.6, 0.8], [1.0, 0.0]]]


def test_loss_equals_the_hand_computed_value():
    # in-batch: q0 vs positives (1, 0) and (0.6, 0.8): sims 1, 0.6; q1: 0, 0.8 -> CE per row
    ce0 = -1.0 + math.log(math.exp(1.0) + math.exp(0.6))
    ce1 = -0.8 + math.log(math.exp(0.0) + math.exp(0.8))
    # own lists: q0 [1, 0], q1 [0.8, 0]; teacher logits [2, 0] and [0, 0]
    teacher = [[2.0, 0.0], [0.0, 0.0]]

    def kl(t, s):
        p = np.exp(t) / np.exp(t).sum()
        logq = np.asarray(s) - math.log(np.exp(s).sum())
        return float((p * (np.log(p) - logq)).sum())

    expected = (ce0 + ce1) / 2 + 0.5 * (kl(teacher[0], [1.0, 0.0]) + kl(teacher[1], [0.8, 0.0])) / 2
    assert _loss(Q, DOCS, teacher, weight=0.5).item() == pytest.approx(expected, rel=1e-5)


def test_kl_vanishes_when_the_student_already_agrees_with_the_teacher():
    own = [[1.0, 0.0], [0.8, 0.0]]  # scale 1: the student's own-list logits
    with_kl = _loss(Q, DOCS, own, weight=3.0).item()
    without = _loss(Q, DOCS, own, weight=0.0).item()
    assert with_kl == pytest.approx(without, abs=1e-6)


def test_candidates_are_not_in_batch_negatives():
    """With the KL off, moving a mined candidate changes nothing: only the batch's positives are negatives."""
    moved = [[[1.0, 0.0], [1.0, 0.0]], [[0.6, 0.8], [0.0, 1.0]]]
    teacher = [[2.0, 0.0], [0.0, 0.0]]
    assert _loss(Q, DOCS, teacher, weight=0.0).item() == pytest.approx(_loss(Q, moved, teacher, weight=0.0).item())


def test_a_candidate_the_teacher_prefers_is_pulled_up_not_pushed_down():
    """Unlike a hard negative, a likely false negative (teacher logit above the positive's) gains similarity."""
    q = torch.tensor([[1.0, 0.0]], requires_grad=True)
    docs = torch.tensor([[[0.8, 0.6], [0.6, 0.8]]])
    from hardneg.train.distill import listwise_distill_loss

    loss = listwise_distill_loss(q, docs, torch.tensor([[0.0, 4.0]]), scale=5.0, weight=1.0, teacher_temperature=1.0)
    loss.backward()
    step = -q.grad[0]  # gradient descent direction for the query
    candidate = docs[0, 1] / docs[0, 1].norm()
    assert float(step @ candidate) > 0  # the query moves towards the teacher's favourite


def test_teacher_temperature_softens_the_target():
    teacher = [[6.0, 0.0], [6.0, 0.0]]
    sharp = _loss(Q, DOCS, teacher, temperature=1.0).item()
    soft = _loss(Q, DOCS, teacher, temperature=1e6).item()
    uniform = _loss(Q, DOCS, [[0.0, 0.0], [0.0, 0.0]]).item()
    assert soft == pytest.approx(uniform, abs=1e-3) and sharp != pytest.approx(soft, abs=1e-3)


def test_pool_carries_the_teachers_scores_for_each_positive_and_negative(tiny_train, overlap_teacher):
    from hardneg.mine import Miner
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.select import SelectionConfig
    from hardneg.train.pool import pool_from_selection

    config = SelectionConfig(num_negatives=3, score_source="teacher")
    selection = Miner(BM25Retriever(), config, depth=20, show_progress=False,
                      teacher=overlap_teacher).mine(tiny_train).selection
    pool = pool_from_selection(tiny_train, selection, teacher_scores=True)
    assert pool.scores.shape == (len(pool), 4)
    for i in range(len(pool)):
        texts = [pool.positives[i], *pool.negatives[i]]
        expected = overlap_teacher.score_pairs([pool.anchors[i]] * 4, texts)
        np.testing.assert_allclose(pool.scores[i], expected, rtol=1e-6)
        assert list(pool.scores[i, 1:]) == sorted(pool.scores[i, 1:], reverse=True)  # teacher order


def test_pool_refuses_teacher_scores_it_does_not_have(tiny_train, overlap_teacher):
    from hardneg.mine import Miner
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.select import SelectionConfig
    from hardneg.train.pool import pool_from_selection

    plain = Miner(BM25Retriever(), SelectionConfig(num_negatives=2), show_progress=False).mine(tiny_train).selection
    with pytest.raises(HardnegError, match="--cross-encoder"):
        pool_from_selection(tiny_train, plain, teacher_scores=True)
    padded = Miner(BM25Retriever(), SelectionConfig(num_negatives=20, if_short="pad"), depth=20, show_progress=False,
                   teacher=overlap_teacher).mine(tiny_train).selection
    with pytest.raises(HardnegError, match="if_short='drop'"):
        pool_from_selection(tiny_train, padded, teacher_scores=True)


def test_pool_refuses_scores_of_the_wrong_shape(mine_tiny_pool):
    from dataclasses import replace

    pool = mine_tiny_pool(2)
    with pytest.raises(HardnegError, match=r"expected \(\d+, 3\)"):
        replace(pool, scores=np.zeros((len(pool), 2), np.float32))
    assert replace(pool, scores=np.zeros((len(pool), 3), np.float32)).scores.shape == (len(pool), 3)
