"""Loss factory: each name gives the sentence-transformers loss it promises."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.train.losses import LOSSES, LossConfig, make_loss


@pytest.fixture(scope="module")
def minilm(minilm_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(minilm_path)
    model.max_seq_length = 32
    return model


@pytest.mark.parametrize(
    ("name", "cls"),
    [("mnrl", "MultipleNegativesRankingLoss"), ("cached-mnrl", "CachedMultipleNegativesRankingLoss"),
     ("gist", "GISTEmbedLoss"), ("cached-gist", "CachedGISTEmbedLoss"), ("margin-mse", "MarginMSELoss"),
     ("listwise-distill", "ListwiseDistillLoss")],
)
def test_each_name_builds_its_loss(minilm, name, cls):
    loss = make_loss(LossConfig(name, mini_batch_size=4), minilm, num_negatives=1)
    assert type(loss).__name__ == cls
    assert loss.model is minilm
    if name.startswith("cached"):
        assert loss.mini_batch_size == 4
    if "gist" in name:
        assert loss.guide is minilm  # self-guided by default


def test_factory_covers_every_listed_loss():
    assert set(LOSSES) == {"mnrl", "cached-mnrl", "gist", "cached-gist", "margin-mse", "listwise-distill"}


def test_bad_choices_are_refused_with_a_fix(minilm):
    with pytest.raises(HardnegError, match="choose one of"):
        LossConfig("infonce")
    for name in ("margin-mse", "listwise-distill"):
        with pytest.raises(HardnegError, match="at least one mined candidate"):
            make_loss(LossConfig(name), minilm, num_negatives=0)
    with pytest.raises(HardnegError, match="teacher_temperature must be positive"):
        LossConfig("listwise-distill", teacher_temperature=0.0)
    with pytest.raises(HardnegError, match="distill_weight must be at least 0"):
        LossConfig("listwise-distill", distill_weight=-1.0)


def test_gist_refuses_more_than_one_negative_and_points_to_cached_gist(minilm):
    """sentence-transformers' GISTEmbedLoss reads (anchor, positive[, negative]) only: 3 negatives would fail
    deep inside the first training step; the cached variant takes any number."""
    with pytest.raises(HardnegError, match="use cached-gist"):
        make_loss(LossConfig("gist"), minilm, num_negatives=3)
    assert type(make_loss(LossConfig("cached-gist"), minilm, num_negatives=3)).__name__ == "CachedGISTEmbedLoss"
    assert type(make_loss(LossConfig("gist"), minilm, num_negatives=1)).__name__ == "GISTEmbedLoss"


def test_mnrl_prefers_the_positive_over_a_hard_negative(minilm):
    """The loss is lower when the positive really is closer than the negative (sanity of column order)."""
    import torch

    loss = make_loss(LossConfig("mnrl"), minilm, num_negatives=1)
    q, p, n = ["debian package manager"], ["apt: the package manager of Debian"], ["a game about space ships"]
    feats = lambda cols: [minilm.preprocess(c) for c in cols]  # noqa: E731
    with torch.no_grad():
        good = loss(feats([q, p, n]), None).item()
        bad = loss(feats([q, n, p]), None).item()
    assert good < bad


def test_the_default_cached_mnrl_has_mnrl_s_loss_and_gradient(tiny_model):
    """The default loss changed from mnrl to cached-mnrl for memory: the same training signal, chunked."""
    import torch
    from sentence_transformers import SentenceTransformer

    assert LossConfig().name == "cached-mnrl"
    model = SentenceTransformer(tiny_model, device="cpu").eval()  # no dropout: both runs see the same network
    cols = [["apt package tool", "json parser", "text editor"], ["apt installs packages", "a json library", "vim"],
            ["dpkg low level", "yaml parser", "emacs editor"]]
    values, grads = [], []
    for config in (LossConfig("mnrl"), LossConfig(mini_batch_size=2)):
        model.zero_grad()
        loss = make_loss(config, model, num_negatives=1)([model.preprocess(c) for c in cols], None)
        loss.backward()
        values.append(loss.item())
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert values[1] == pytest.approx(values[0], abs=1e-5)
    assert len(grads[0]) == len(grads[1]) > 0
    for cached, plain in zip(grads[1], grads[0]):
        torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cached-mnrl", "gist", "margin-mse", "listwise-distill"])
def test_one_training_step_runs_with_each_loss(tmp_path, tiny_train, minilm_path, name):
    """The pool collator feeds every loss the columns it expects (margin-mse: teacher scores as labels)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from hardneg.export import export
    from hardneg.mine import Miner
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.select import SelectionConfig
    from hardneg.train import TrainConfig, pool_from_file, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        selection = Miner(BM25Retriever(), SelectionConfig(num_negatives=1), show_progress=False).mine(tiny_train).selection
        path = export(tiny_train, selection, tmp_path / "scored.jsonl", "n-tuple", with_scores=True)
        pool = pool_from_file(path, tiny_train, with_scores=LossConfig(name).needs_scores)
        model = SentenceTransformer(minilm_path)
        before = next(model.parameters()).detach().clone()
        result = train(model, pool, tmp_path / "out", TrainConfig(LossConfig(name, mini_batch_size=4), batch_size=8,
                       max_steps=1, max_length=32, precision="fp32", logging_steps=1, warmup_ratio=0.0,
                       learning_rate=1e-4), show_progress=False)
    finally:
        torch.set_num_threads(threads)
    assert result.steps == 1 and np.isfinite(result.loss_log[0]["loss"])
    assert not torch.equal(before, next(model.parameters()).detach())
