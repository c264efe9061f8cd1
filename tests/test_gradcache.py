"""GradCache: chunked scoring gives the loss and parameter gradient of one pass, dropout included."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hardneg.gradcache import cached_loss  # noqa: E402


class DropoutScorer(torch.nn.Module):
    """score_i = w2 . dropout(tanh(W1 x_i)): random in training mode, so a wrong replay shows."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = torch.nn.Linear(dim, 16)
        self.out = torch.nn.Linear(16, 1)
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, x):
        return self.out(self.drop(torch.tanh(self.hidden(x)))).view(-1)


def listwise(scores, batch: int = 4):
    """Softmax cross-entropy over each query's column of candidates, the positive first (column-major)."""
    logits = scores.reshape(-1, batch).T  # (batch, candidates)
    return torch.nn.functional.cross_entropy(logits, torch.zeros(batch, dtype=torch.long))


def grads(model):
    return [p.grad.detach().clone() for p in model.parameters()]


CHUNKS = [np.array([7, 2, 11]), np.array([0, 5]), np.array([9, 1, 3, 4]), np.array([8, 6, 10])]


def test_chunked_gradient_equals_one_pass_over_the_same_chunks_with_dropout_on():
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    model = DropoutScorer().train()

    # reference: every chunk scored with its graph kept, one loss, one backward
    torch.manual_seed(5)
    parts = [model(x[torch.as_tensor(rows)]) for rows in CHUNKS]
    scores = torch.empty(12)
    scores = scores.index_put((torch.as_tensor(np.concatenate(CHUNKS)),), torch.cat(parts))
    expected_loss = listwise(scores)
    expected_loss.backward()
    expected = grads(model)
    model.zero_grad()

    torch.manual_seed(5)
    loss = cached_loss(lambda rows: model(x[torch.as_tensor(rows)]), CHUNKS, listwise)
    assert not any(p.grad is not None for p in model.parameters())  # nothing back-propagated yet
    loss.backward()

    assert loss.item() == pytest.approx(expected_loss.item(), abs=1e-6)
    for got, want in zip(grads(model), expected):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_without_the_replayed_random_state_the_gradient_would_differ():
    """The dropout draws matter: the check above can fail (a replay with fresh masks gives another gradient)."""
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    model = DropoutScorer().train()
    torch.manual_seed(5)
    cached_loss(lambda rows: model(x[torch.as_tensor(rows)]), CHUNKS, listwise).backward()
    replayed = grads(model)
    model.zero_grad()
    torch.manual_seed(6)  # other masks for the same scores' gradient
    parts = [model(x[torch.as_tensor(rows)]) for rows in CHUNKS]
    listwise(torch.empty(12).index_put((torch.as_tensor(np.concatenate(CHUNKS)),), torch.cat(parts))).backward()
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(replayed, grads(model)))


def test_incoming_gradient_scales_every_chunk_and_rng_outside_is_untouched():
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    model = DropoutScorer().eval()
    cached_loss(lambda rows: model(x[torch.as_tensor(rows)]), CHUNKS, listwise).backward()
    single = grads(model)
    model.zero_grad()
    torch.manual_seed(3)
    loss = cached_loss(lambda rows: model(x[torch.as_tensor(rows)]), CHUNKS, listwise)
    after_forward = torch.get_rng_state()
    (loss * 0.25).backward()  # e.g. gradient accumulation over 4 steps
    assert torch.equal(torch.get_rng_state(), after_forward)
    for got, want in zip(grads(model), single):
        torch.testing.assert_close(got, want * 0.25)


def test_without_grad_mode_it_is_the_plain_loss():
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    model = DropoutScorer().eval()
    with torch.no_grad():
        loss = cached_loss(lambda rows: model(x[torch.as_tensor(rows)]), CHUNKS, listwise)
        assert loss.item() == pytest.approx(listwise(model(x)).item(), abs=1e-6)


def test_no_chunks_is_refused():
    with pytest.raises(ValueError, match="at least one chunk"):
        cached_loss(lambda rows: None, [], listwise)
