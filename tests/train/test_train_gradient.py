"""Gradient shares: hand-computed on a 2-example batch, against autograd, and logged by a real training run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hardneg.text import text_keys
from hardneg.train.gradient import GradientShareLog, candidate_classes, gradient_shares, padding_texts
from hardneg.train.pool import NegativePool

# two examples, one negative each; columns: [positive 0, positive 1, negative 0, negative 1]
SCORES = np.array([[math.log(2), 0.0, math.log(4), 0.0],  # exp: 2 1 4 1, sum 8
                   [0.0, math.log(3), 0.0, math.log(4)]])  # exp: 1 3 1 4, sum 9


def test_classes_follow_the_sentence_transformers_column_layout():
    classes = candidate_classes(2, np.array([[False], [True]]))
    # row 0: own positive, in-batch positive, own hard negative, in-batch negative
    # row 1: in-batch, own positive, in-batch, own negative which is padding
    assert classes.tolist() == [[0, 3, 1, 3], [3, 0, 3, 2]]


def test_shares_by_hand():
    out = gradient_shares(SCORES, 1.0, np.array([[False], [True]]))
    # probabilities: row 0 = 1/4, 1/8, 1/2, 1/8; row 1 = 1/9, 3/9, 1/9, 4/9
    # pushed mass = (1 - 1/4) + (1 - 1/3) = 17/12
    assert out["shares"]["hard_1"] == pytest.approx(0.5 / (17 / 12))  # 6/17
    assert out["shares"]["padding"] == pytest.approx((4 / 9) / (17 / 12))  # 16/51
    assert out["shares"]["in_batch"] == pytest.approx((1 / 4 + 2 / 9) / (17 / 12))  # 1/3
    assert sum(out["shares"].values()) == pytest.approx(1.0)
    assert out["positive_prob"] == pytest.approx((1 / 4 + 1 / 3) / 2)
    assert out["positive_grad"] == pytest.approx(17 / 24)


def test_shares_are_the_autograd_gradient_of_the_softmax_loss():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    b, k, scale = 4, 2, 20.0
    scores = rng.uniform(-1, 1, (b, b * (1 + k)))
    padded = np.zeros((b, k), dtype=bool)
    padded[1, 1] = True
    logits = torch.tensor(scores, requires_grad=True)
    torch.nn.functional.cross_entropy(scale * logits, torch.arange(b), reduction="sum").backward()
    grad = logits.grad.numpy() / scale  # d loss / d logit = p - onehot
    classes = candidate_classes(b, padded)
    negative = np.abs(grad[classes > 0])
    out = gradient_shares(scores, scale, padded)
    for code, name in [(1, "hard_1"), (2, "hard_2"), (k + 1, "padding"), (k + 2, "in_batch")]:
        assert out["shares"][name] == pytest.approx(np.abs(grad[classes == code]).sum() / negative.sum())
    assert out["positive_grad"] == pytest.approx(np.abs(grad[classes == 0]).mean())


def test_log_assembles_chunks_of_a_cached_loss_and_reads_padding(tmp_path):
    torch = pytest.importorskip("torch")
    pool = NegativePool(["q0", "q1"], ["p0", "p1"], [["n0"], ["n1"]], np.arange(2),
                        [text_keys(["p0"]), text_keys(["p1"])], np.arange(2))
    log = GradientShareLog(pool, every=2, scale=1.0, path=tmp_path / "g.jsonl", padding={1: {"n1"}})
    sim = log.wrap(lambda a, b: torch.tensor(SCORES)[a])  # "embeddings" are row indices here
    for step in range(3):
        log.collated([0, 1])
        log.begin_step(step, max_steps=3)
        sim(torch.tensor([0]), None)  # the cached loss: one query chunk at a time
        sim(torch.tensor([1]), None)
    # measured at steps 1 (first), 3 (every 2nd; also the last), not 2
    assert [e["step"] for e in log.entries] == [1, 3]
    lines = [json.loads(x) for x in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert lines[0]["shares"]["padding"] == pytest.approx(16 / 51)


def test_padding_texts_reads_the_padding_bit():
    from types import SimpleNamespace

    selection = SimpleNamespace(source_names=("dense", "random"), query_rows=np.array([3, 5]),
                                negatives=np.array([[0, 1], [2, -1]]), sources=np.array([[1, 2], [1, 0]], np.uint8))
    assert padding_texts(selection, ["a", "b", "c"]) == {3: {"b"}}


@pytest.mark.parametrize("loss", ["mnrl", "cached-mnrl"])
def test_training_logs_shares_at_sampled_steps(tmp_path, tiny_model, mine_tiny_pool, loss):
    import torch
    from sentence_transformers import SentenceTransformer

    from hardneg.train.losses import LossConfig
    from hardneg.train.trainer import TrainConfig, train

    pool = mine_tiny_pool(2)
    model = SentenceTransformer(tiny_model, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model, pool, tmp_path, TrainConfig(LossConfig(loss, mini_batch_size=3), batch_size=8, max_steps=4,
                                                 max_length=16, precision="fp32", log_gradient_every=2),
              show_progress=False)
    finally:
        torch.set_num_threads(threads)
    entries = [json.loads(x) for x in (tmp_path / "gradient_shares.jsonl").read_text().splitlines()]
    assert [e["step"] for e in entries] == [1, 3, 4]
    for e in entries:
        assert set(e["shares"]) == {"hard_1", "hard_2", "padding", "in_batch"}
        assert sum(e["shares"].values()) == pytest.approx(1.0)
        assert 0 < e["positive_prob"] < 1
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["gradient_shares"] == entries
