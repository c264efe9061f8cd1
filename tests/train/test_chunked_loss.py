"""The chunked cross-encoder losses: sentence-transformers' losses, value and gradient, in token-budget chunks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")

QUERIES = ["apt package manager", "python json parser", "vim text editor", "gnu image tool"]
POSITIVES = ["apt installs and removes packages", "a fast json library for python programs",
             "vim is a highly configurable text editor", "the gnu image manipulation program for photos"]
HARD = [["dpkg low level package tool", "aptitude terminal front end"],
        ["yaml parser for python", "ujson ultra fast encoder"],
        ["emacs extensible editor", "nano small friendly editor with a much longer description here"],
        ["inkscape vector drawing", "imagemagick command line image conversion"]]


@pytest.fixture
def cross_encoder(tiny_models):
    from hardneg.teacher.scorer import load_cross_encoder

    return load_cross_encoder(str(tiny_models[1]), device="cpu", max_length=32)


def columns():
    return [QUERIES, POSITIVES, [h[0] for h in HARD], [h[1] for h in HARD]]


def param_grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_listwise_equals_the_one_pass_loss_without_dropout(cross_encoder):
    from sentence_transformers.cross_encoder.losses import MultipleNegativesRankingLoss

    from hardneg.train.chunked_loss import ChunkedListwiseLoss

    cross_encoder.model.eval()
    torch.manual_seed(0)
    want = MultipleNegativesRankingLoss(cross_encoder, num_negatives=2)(columns(), None)
    want.backward()
    expected = param_grads(cross_encoder.model)
    cross_encoder.model.zero_grad()

    torch.manual_seed(0)  # the same in-batch draw
    got = ChunkedListwiseLoss(cross_encoder, num_negatives=2, chunk_tokens=40)(columns(), None)
    got.backward()
    assert got.item() == pytest.approx(want.item(), abs=1e-5)
    grads = param_grads(cross_encoder.model)
    assert grads.keys() == expected.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, expected[name], atol=2e-5, rtol=1e-3, msg=name)


def test_listwise_gradient_with_dropout_equals_one_backward_over_the_same_chunks(cross_encoder):
    """With dropout on, the reference scores the same chunks in the same order, keeping every graph."""
    from sentence_transformers.util import batch_to_device

    from hardneg.runtime import token_budget_batches
    from hardneg.teacher.scorer import pair_token_lengths
    from hardneg.train.chunked_loss import ChunkedListwiseLoss

    cross_encoder.model.train()
    features = cross_encoder.preprocess([(QUERIES[0], POSITIVES[0])])
    assert cross_encoder(features)["scores"].item() != cross_encoder(features)["scores"].item()  # dropout is on
    loss_fn = ChunkedListwiseLoss(cross_encoder, num_negatives=2, chunk_tokens=40)
    torch.manual_seed(1)
    cols = [POSITIVES, *loss_fn.get_in_batch_negatives(QUERIES, columns()[1:]), *columns()[2:]]
    pairs = [(q, d) for col in cols for q, d in zip(QUERIES, col)]
    chunks = token_budget_batches(pair_token_lengths(cross_encoder, *zip(*pairs)), len(pairs), 40)
    assert len(chunks) > 3  # the budget really splits the step
    parts = [cross_encoder(batch_to_device(cross_encoder.preprocess([pairs[i] for i in rows]), "cpu"))["scores"].view(-1)
             for rows in chunks]
    scores = torch.empty(len(pairs)).index_put((torch.as_tensor(np.concatenate(chunks)),), torch.cat(parts))
    want = loss_fn.calculate_loss([scores], len(QUERIES))
    want.backward()
    expected = param_grads(cross_encoder.model)
    cross_encoder.model.zero_grad()

    torch.manual_seed(1)
    got = loss_fn(columns(), None)
    got.backward()
    assert got.item() == pytest.approx(want.item(), abs=1e-6)
    for name, g in param_grads(cross_encoder.model).items():
        torch.testing.assert_close(g, expected[name], atol=1e-6, rtol=1e-4, msg=name)


def test_bce_equals_the_one_pass_loss(cross_encoder):
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from hardneg.train.chunked_loss import ChunkedBCELoss

    cross_encoder.model.eval()
    docs = POSITIVES + [h[0] for h in HARD]
    inputs, labels = [QUERIES * 2, docs], torch.tensor([1.0] * 4 + [0.0] * 4)
    pos_weight = torch.tensor(2.0)
    want = BinaryCrossEntropyLoss(cross_encoder, pos_weight=pos_weight)(inputs, labels)
    want.backward()
    expected = param_grads(cross_encoder.model)
    cross_encoder.model.zero_grad()
    got = ChunkedBCELoss(cross_encoder, pos_weight=pos_weight, chunk_tokens=30)(inputs, labels)
    got.backward()
    assert got.item() == pytest.approx(want.item(), abs=1e-5)
    for name, g in param_grads(cross_encoder.model).items():
        torch.testing.assert_close(g, expected[name], atol=2e-5, rtol=1e-3, msg=name)


def test_a_budget_below_one_token_is_refused(cross_encoder):
    from hardneg.train.chunked_loss import ChunkedListwiseLoss

    with pytest.raises(ValueError, match="chunk_tokens"):
        ChunkedListwiseLoss(cross_encoder, chunk_tokens=0)
