"""Exact gradients of a loss over many scored items, with the activations of one chunk alive at a time.

A loss that reads every pair of a step at once (a listwise softmax over a query's
candidates, in-batch negatives) would keep the activations of all of them for the
backward pass: memory grows with the batch. GradCache splits the work in three:

1. score every chunk without gradients, snapshotting the random state before each
   (dropout);
2. compute the loss on the detached scores and its gradient with respect to them;
3. when the loss is back-propagated, score each chunk again with gradients, under the
   same random state (so the same dropout masks), and back-propagate that chunk's
   share of the score gradient.

The parameter gradient is the one a single pass over the same chunks would give; the
activation memory is one chunk's. It costs one extra forward pass.

References:
    Gao, Zhang, Han and Callan, "Scaling Deep Contrastive Learning Batch Size under
    Memory Limited Setup", RepL4NLP 2021.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Most padded tokens per chunked forward pass, by default (cross-encoder teacher training).
DEFAULT_CHUNK_TOKENS = 2048

ScoreChunk = Callable[[np.ndarray], Any]  # rows -> float tensor (len(rows),)


def cached_loss(score_chunk: ScoreChunk, chunks: Sequence[np.ndarray], loss_of_scores: Callable[[Any], Any]):
    """The loss of all scores, computed chunk by chunk; its backward replays each chunk with gradients.

    Args:
        score_chunk: scores the items ``rows`` (an index array) with the model: a tensor
            of shape ``(len(rows),)``. Called once per chunk without gradients, and once
            more with gradients when the returned loss is back-propagated.
        chunks: index arrays that together are a permutation of ``range(n)``.
        loss_of_scores: the loss of the ``(n,)`` score tensor (item ``i`` at index ``i``).

    Returns:
        A scalar tensor. Without grad mode it is the plain loss; with grad mode it is a
        detached leaf whose ``backward()`` runs step 3 (scaled by the incoming gradient,
        so gradient accumulation and loss scaling reach every chunk).
    """
    import torch

    if not chunks:
        raise ValueError("cached_loss needs at least one chunk of items to score.")
    states, parts = [], []
    autocast = _autocast_state()
    with torch.no_grad():
        for rows in chunks:
            states.append(_rng_state())
            parts.append(score_chunk(rows).detach().float())
    flat = torch.cat(parts)  # chunk order
    scores = torch.empty_like(flat)
    scores[torch.as_tensor(np.concatenate(chunks), dtype=torch.long, device=flat.device)] = flat  # item order
    if not torch.is_grad_enabled():
        return loss_of_scores(scores)
    scores.requires_grad_(True)
    loss = loss_of_scores(scores)
    (grad,) = torch.autograd.grad(loss, scores)  # (n,) d loss / d score
    out = loss.detach().requires_grad_(True)
    out.register_hook(partial(_replay, score_chunk, list(chunks), states, grad, autocast))
    return out


def _replay(score_chunk: ScoreChunk, chunks, states, grad, autocast, grad_output) -> None:
    """Step 3: each chunk again, with gradients and its recorded random state; backward its score gradient."""
    import torch

    with torch.enable_grad(), _autocast_context(autocast):
        for rows, state in zip(chunks, states):
            with _restored_rng(state):
                scores = score_chunk(rows)
            index = torch.as_tensor(rows, dtype=torch.long, device=grad.device)
            scores.float().backward((grad[index] * grad_output).to(scores.device))
    return None


def _rng_state() -> tuple[Any, Any]:
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


@contextlib.contextmanager
def _restored_rng(state):
    """Run with the random state ``state``; the state outside is left as it was."""
    import torch

    cpu, cuda = state
    devices = list(range(len(cuda))) if cuda is not None else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        yield


def _autocast_state() -> list[tuple[str, Any]]:
    """The autocast settings in force (device type, dtype): the trainer's, to be re-entered on replay."""
    import torch

    active = []
    for device_type in ("cpu", "cuda"):
        if torch.is_autocast_enabled(device_type):
            active.append((device_type, torch.get_autocast_dtype(device_type)))
    return active


def _autocast_context(active: list[tuple[str, Any]]):
    import torch

    stack = contextlib.ExitStack()
    for device_type, dtype in active:
        stack.enter_context(torch.autocast(device_type=device_type, dtype=dtype))
    return stack
