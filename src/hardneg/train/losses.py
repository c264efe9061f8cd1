"""Loss factory: the sentence-transformers losses hardneg trains with.

References:
    Henderson et al., "Efficient Natural Language Response Suggestion for Smart
    Reply", 2017 (MultipleNegativesRankingLoss). Gao et al., "Scaling Deep
    Contrastive Learning Batch Size under Memory Limited Setup", RepL4NLP 2021
    (GradCache, the cached variants). Solatorio, "GISTEmbed: Guided In-sample
    Selection of Training Negatives for Text Embedding Fine-tuning", 2024.
    Hofstätter et al., "Improving Efficient Neural Ranking Models with
    Cross-Architecture Knowledge Distillation", 2020 (MarginMSE). Ren et al.,
    "RocketQAv2", EMNLP 2021 (listwise distillation; :mod:`hardneg.train.distill`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hardneg.errors import HardnegError
from hardneg.train.recipe import DEFAULT_RECIPE

logger = logging.getLogger(__name__)

LOSSES = ("mnrl", "cached-mnrl", "gist", "cached-gist", "margin-mse", "listwise-distill")
SCORED_LOSSES = ("margin-mse", "listwise-distill")  # labels: the teacher's scores


@dataclass(frozen=True)
class LossConfig:
    """Which loss, and its knobs.

    Attributes:
        name: ``mnrl`` (in-batch + hard negatives, InfoNCE); ``cached-mnrl`` (the default: the
            same loss and gradient, GradCache: the batch encoded ``mini_batch_size`` texts at
            a time, so memory does not grow with the batch); ``gist`` /
            ``cached-gist`` (in-batch candidates that the guide scores above the
            positive are masked out as likely false negatives); ``margin-mse``
            (regress the student's positive-negative margin on teacher scores; needs
            a ``scores`` column); ``listwise-distill`` (in-batch InfoNCE on the
            positives plus KL from the teacher's softmax over each query's own
            positive and candidates; needs a ``scores`` column; the candidates are
            soft-labelled, never hard negatives).
        scale: inverse temperature of the ranking losses (MNRL default 20).
        mini_batch_size: texts per forward pass of the cached losses (their memory bound).
        guide: GIST guide model (name or path); None uses the model being trained
            (self-guided, so the guide improves with the student).
        gist_temperature: GIST softmax temperature.
        distill_weight: weight of the KL term of ``listwise-distill``.
        teacher_temperature: ``listwise-distill`` divides the teacher's logits by it
            before the softmax (higher: softer targets).
    """

    name: str = DEFAULT_RECIPE.loss
    scale: float = 20.0
    mini_batch_size: int = 32
    guide: str | None = None
    gist_temperature: float = 0.01
    distill_weight: float = 1.0
    teacher_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise HardnegError(f"Unknown loss {self.name!r}; choose one of {', '.join(LOSSES)}.")
        if self.mini_batch_size < 1:
            raise HardnegError(f"mini_batch_size must be at least 1, got {self.mini_batch_size}.")
        if self.distill_weight < 0:
            raise HardnegError(f"distill_weight must be at least 0, got {self.distill_weight}.")
        if self.teacher_temperature <= 0:
            raise HardnegError(f"teacher_temperature must be positive, got {self.teacher_temperature}.")

    @property
    def needs_scores(self) -> bool:
        return self.name in SCORED_LOSSES

    def check_negatives(self, num_negatives: int) -> None:
        """Refuse a hard-negative count this loss cannot take (call it before mining, not after)."""
        if self.needs_scores and num_negatives < 1:
            raise HardnegError(f"{self.name} needs at least one mined candidate with teacher scores per query; "
                               "it has no in-batch-only mode.")
        if self.name == "gist" and num_negatives > 1:
            raise HardnegError(f"gist (sentence-transformers' GISTEmbedLoss) takes at most one hard negative per "
                               f"example, got {num_negatives}; use cached-gist, which takes any number, or one "
                               "negative.")


def make_loss(config: LossConfig, model: Any, *, num_negatives: int) -> Any:
    """The sentence-transformers loss ``config`` names, bound to ``model``.

    Args:
        config: the loss settings.
        model: the ``SentenceTransformer`` being trained.
        num_negatives: hard negatives per example (MarginMSE needs at least one).
    """
    from sentence_transformers.sentence_transformer import losses

    config.check_negatives(num_negatives)
    if config.name == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, scale=config.scale)
    if config.name == "cached-mnrl":
        return losses.CachedMultipleNegativesRankingLoss(model, scale=config.scale, mini_batch_size=config.mini_batch_size)
    if config.name in ("gist", "cached-gist"):
        guide = model
        if config.guide is not None:
            from hardneg.retrieve.encoder import load_sentence_transformer

            guide = load_sentence_transformer(config.guide, device=str(model.device))
        if config.name == "gist":
            return losses.GISTEmbedLoss(model, guide=guide, temperature=config.gist_temperature)
        return losses.CachedGISTEmbedLoss(model, guide=guide, temperature=config.gist_temperature,
                                          mini_batch_size=config.mini_batch_size)
    if config.name == "listwise-distill":
        from hardneg.train.distill import ListwiseDistillLoss

        return ListwiseDistillLoss(model, scale=config.scale, weight=config.distill_weight,
                                   teacher_temperature=config.teacher_temperature)
    return losses.MarginMSELoss(model)
