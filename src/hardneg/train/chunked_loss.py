"""Cross-encoder training losses whose memory is bounded by a token budget, not by the batch.

A listwise step scores ``batch × (1 + hard + in-batch negatives)`` pairs in one softmax;
sentence-transformers' losses push them all through one forward and backward pass, so
activation memory grows with the batch (16 queries × 8 pairs × 96 tokens already held
gigabytes on CPU). These losses compute the same value and the same gradient with
:func:`hardneg.gradcache.cached_loss`: the step's pairs are sorted by token length and
cut into chunks of at most ``chunk_tokens`` padded tokens, and only one chunk's
activations are alive at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss, MultipleNegativesRankingLoss
from sentence_transformers.util import batch_to_device

from hardneg.gradcache import DEFAULT_CHUNK_TOKENS, cached_loss
from hardneg.runtime import token_budget_batches
from hardneg.teacher.scorer import pair_token_lengths

logger = logging.getLogger(__name__)


def chunked_pairs_loss(model, pairs: Sequence[tuple[str, str]], chunk_tokens: int, loss_of_scores: Callable,
                       prompt: str | None = None, task: str | None = None):
    """``loss_of_scores`` of the model's logits for ``pairs``, scored in token-budget chunks (GradCache)."""
    lengths = pair_token_lengths(model, [q for q, _ in pairs], [d for _, d in pairs])
    chunks = token_budget_batches(lengths, len(pairs), chunk_tokens)

    def score(rows):
        features = model.preprocess([pairs[i] for i in rows], prompt=prompt, task=task)
        return model(batch_to_device(features, model.device))["scores"].view(-1)  # (len(rows),)

    return cached_loss(score, chunks, loss_of_scores)


class ChunkedListwiseLoss(MultipleNegativesRankingLoss):
    """sentence-transformers' cross-encoder ``MultipleNegativesRankingLoss``, in token-budget chunks.

    Per query a softmax over its positive, ``num_negatives`` documents of other queries
    in the batch and its hard negatives (the input columns after the positive); the
    value and gradient are those of the parent loss for the same in-batch draw and
    dropout masks.

    Args:
        model: the ``CrossEncoder`` being trained (one output).
        num_negatives: in-batch negatives per query.
        chunk_tokens: most padded tokens per forward pass; bounds activation memory.
    """

    def __init__(self, model, *, num_negatives: int = 4, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> None:
        super().__init__(model, num_negatives=num_negatives)
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}.")
        self.chunk_tokens = chunk_tokens

    def forward(self, inputs: list[list[str]], labels=None, prompt: str | None = None, task: str | None = None):
        anchors = inputs[0]
        batch = len(anchors)
        # the parent's column order: positives, in-batch negatives, hard negatives
        columns = [inputs[1], *self.get_in_batch_negatives(anchors, inputs[1:]), *inputs[2:]]
        pairs = [(anchor, doc) for column in columns for anchor, doc in zip(anchors, column)]
        return chunked_pairs_loss(self.model, pairs, self.chunk_tokens,
                                  lambda scores: self.calculate_loss([scores], batch), prompt, task)

    def get_config_dict(self):
        return {**super().get_config_dict(), "chunk_tokens": self.chunk_tokens}


class ChunkedBCELoss(BinaryCrossEntropyLoss):
    """sentence-transformers' cross-encoder ``BinaryCrossEntropyLoss``, in token-budget chunks.

    Args:
        model: the ``CrossEncoder`` being trained (one output).
        pos_weight: weight of the positive class.
        chunk_tokens: most padded tokens per forward pass; bounds activation memory.
    """

    def __init__(self, model, *, pos_weight=None, chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> None:
        super().__init__(model, pos_weight=pos_weight)
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}.")
        self.chunk_tokens = chunk_tokens

    def forward(self, inputs: list[list[str]], labels, prompt: str | None = None, task: str | None = None):
        if len(inputs) != 2:
            raise ValueError(f"{type(self).__name__} takes (query, document) columns and a label, got "
                             f"{len(inputs)} text columns.")
        pairs = list(zip(inputs[0], inputs[1]))
        target = labels.view(-1).float()

        def loss_of_scores(scores):
            return self.bce_with_logits_loss(self.activation_fn(scores), target.to(scores.device))

        return chunked_pairs_loss(self.model, pairs, self.chunk_tokens, loss_of_scores, prompt, task)

    def get_config_dict(self):
        return {**super().get_config_dict(), "chunk_tokens": self.chunk_tokens}
