"""Listwise distillation from a cross-encoder teacher, on top of in-batch negatives.

Imports torch: load it through :func:`hardneg.train.losses.make_loss`.

Each example brings its query, its positive and ``k`` mined candidates with the
teacher's logits ``[positive, candidates...]``. The loss is

    InfoNCE(query vs the batch's positives)
      + weight * KL(softmax(teacher / T) || softmax(scale * cos(query, own list)))

The in-batch term treats other queries' positives as negatives, as MNRL does. The
mined candidates enter only the KL term: they are hard, and some are unlabelled
relevant documents, so instead of a hard "not relevant" label each gets the weight
the teacher gives it. A candidate the teacher scores as high as the positive pulls
the student up, not down.

References:
    Ren et al., "RocketQAv2: A Joint Training Method for Dense Passage Retrieval and
    Passage Re-ranking", EMNLP 2021 (listwise distillation over the candidate list).
    Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture
    Knowledge Distillation", 2020 (cross-encoder scores as a bi-encoder's labels).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def listwise_distill_loss(queries, documents, teacher_scores, *, scale: float, weight: float,
                          teacher_temperature: float):
    """The loss of one batch, from embeddings (torch tensors).

    Args:
        queries: ``[B, d]`` query embeddings.
        documents: ``[B, 1 + k, d]`` per query its positive, then its ``k`` candidates.
        teacher_scores: ``[B, 1 + k]`` teacher logits in the same order.
        scale: student inverse temperature (cosine similarities are multiplied by it).
        weight: weight of the KL term.
        teacher_temperature: the teacher's logits are divided by it before the softmax.

    Returns:
        A scalar tensor: in-batch cross-entropy plus ``weight`` times the mean KL.
    """
    q = F.normalize(queries, dim=-1)
    docs = F.normalize(documents, dim=-1)
    in_batch = scale * q @ docs[:, 0].T
    ranking = F.cross_entropy(in_batch, torch.arange(len(q), device=q.device))
    own = scale * torch.einsum("bd,bnd->bn", q, docs)
    target = F.softmax(teacher_scores.float() / teacher_temperature, dim=-1)
    kl = F.kl_div(F.log_softmax(own.float(), dim=-1), target, reduction="batchmean")
    return ranking + weight * kl


class ListwiseDistillLoss(nn.Module):
    """:func:`listwise_distill_loss` as a sentence-transformers loss.

    Columns ``anchor, positive, negative_1..k``; labels: the teacher's logits
    ``[positive, negative_1..k]`` (a ``scores`` column).
    """

    def __init__(self, model: Any, *, scale: float = 20.0, weight: float = 1.0,
                 teacher_temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.scale, self.weight, self.teacher_temperature = scale, weight, teacher_temperature

    def forward(self, sentence_features, labels):
        embeddings = [self.model(features)["sentence_embedding"] for features in sentence_features]
        return listwise_distill_loss(embeddings[0], torch.stack(embeddings[1:], dim=1), labels, scale=self.scale,
                                     weight=self.weight, teacher_temperature=self.teacher_temperature)
