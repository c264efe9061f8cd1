"""Selection settings: which candidates become negatives, and how many."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from hardneg.choices import (
    DENOISE_RULES,
    IF_SHORT,
    SAMPLING,
    SCORE_SOURCES,
    DenoiseRule,
    IfShort,
    Sampling,
    ScoreSource,
    check_choice,
)
from hardneg.errors import HardnegError


@dataclass(frozen=True)
class SelectionConfig:
    """How candidates are filtered and sampled into negatives.

    Attributes:
        num_negatives: negatives per query.
        range_min: skip the first ``range_min`` non-positive candidates (the likeliest
            false negatives).
        range_max: consider only the first ``range_max`` non-positive candidates.
        min_score: drop candidates scoring below this.
        max_score: drop candidates scoring above this.
        absolute_margin: keep a candidate only if ``score + margin <= positive_score``
            (NV-Retriever TopK-MarginPos).
        relative_margin: keep a candidate only if
            ``score <= positive_score - |positive_score| * margin`` (TopK-PercPos; 0.05
            keeps negatives below 95 % of a positive positive score).
            With several positives, ``positive_score`` is the lowest of them.
        sampling: ``top`` takes the best-ranked survivors; ``random`` samples them
            uniformly; ``simans`` samples with probability
            ``exp(-a * (score - positive_score - b) ** 2)`` (peaked near the positive).
        simans_a: SimANS sharpness ``a``; scale it to your score range (cosine
            scores: 10-100; BM25 scores: ~0.1).
        simans_b: SimANS offset ``b``: where, relative to the positive, the peak sits.
        if_short: a query with fewer survivors than ``num_negatives`` is dropped
            (``drop``), filled up with random non-positive documents (``pad``), or
            kept with fewer negatives (``keep``; only for list formats).
        dedupe_texts: also drop candidates whose normalised text equals a positive's,
            and repeats of an earlier candidate's text.
        seed: seed for ``random``, ``simans`` and padding; equal seeds give equal output.
        score_source: which score orders the candidates and feeds the score filters,
            margins and SimANS: the retriever's (``retriever``) or the cross-encoder
            teacher's (``teacher``; the candidates must have been rescored). With
            ``teacher`` the list is re-sorted by teacher logit first, so the rank window
            and ``top`` sampling take the highest-scoring candidates that survive the
            filters: cross-encoder mined negatives.
        denoise: drop candidates the teacher calls relevant (likely false negatives):
            ``absolute`` (``teacher > denoise_threshold``), ``relative`` (``teacher >
            positive's teacher logit - denoise_threshold``) or ``probability``
            (``sigmoid(teacher) > denoise_threshold``). None: no denoising.
        denoise_threshold: the threshold of the ``denoise`` rule (logits, or a
            probability in (0, 1)).
        promote_denoised: add denoised candidates to the query's positives in the
            exports (RocketQA-style data augmentation).

    References:
        Moreira et al., "NV-Retriever: Improving text embedding models with effective
        hard-negative mining", 2024. Zhou et al., "SimANS: Simple Ambiguous Negatives
        Sampling for Dense Text Retrieval", EMNLP 2022. Qu et al., "RocketQA: An
        Optimized Training Approach to Dense Passage Retrieval for Open-Domain Question
        Answering", NAACL 2021.
    """

    num_negatives: int = 3
    range_min: int = 0
    range_max: int | None = None
    min_score: float | None = None
    max_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    sampling: Sampling = "top"
    simans_a: float = 20.0
    simans_b: float = 0.0
    if_short: IfShort = "drop"
    dedupe_texts: bool = True
    seed: int = 0
    score_source: ScoreSource = "retriever"
    denoise: DenoiseRule | None = None
    denoise_threshold: float = 0.0
    promote_denoised: bool = False

    def __post_init__(self) -> None:
        for name in ("min_score", "max_score", "absolute_margin", "relative_margin", "simans_a", "simans_b",
                     "denoise_threshold"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise HardnegError(f"{name} must be a finite number, got {value!r}.")
        if self.seed < 0:
            raise HardnegError(f"seed must be >= 0 (numpy seeds are non-negative), got {self.seed}.")
        if self.num_negatives < 1:
            raise HardnegError(f"num_negatives must be at least 1, got {self.num_negatives}.")
        if self.range_min < 0:
            raise HardnegError(f"range_min must be >= 0, got {self.range_min}.")
        if self.range_max is not None and self.range_max - self.range_min < self.num_negatives:
            raise HardnegError(
                f"The rank window [{self.range_min}, {self.range_max}) holds fewer than num_negatives="
                f"{self.num_negatives} candidates; raise range_max or lower range_min/num_negatives."
            )
        if self.min_score is not None and self.max_score is not None and self.min_score > self.max_score:
            raise HardnegError(f"min_score {self.min_score} is above max_score {self.max_score}; swap them.")
        check_choice("sampling", self.sampling, SAMPLING)
        check_choice("if_short", self.if_short, IF_SHORT)
        if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
            raise HardnegError(f"relative_margin is a fraction in [0, 1), got {self.relative_margin}.")
        if self.simans_a <= 0:
            raise HardnegError(f"simans_a must be positive, got {self.simans_a}.")
        check_choice("score_source", self.score_source, SCORE_SOURCES)
        if self.denoise is not None:
            check_choice("denoise", self.denoise, DENOISE_RULES)
        if self.denoise == "probability" and not 0 < self.denoise_threshold < 1:
            raise HardnegError(
                f"denoise='probability' compares sigmoid(teacher logit) with a threshold in (0, 1); got "
                f"{self.denoise_threshold}. Use e.g. 0.9, or denoise='absolute' for a logit threshold."
            )
        if self.promote_denoised and self.denoise is None:
            raise HardnegError("promote_denoised needs a denoise rule (e.g. denoise='probability', denoise_threshold=0.9).")

    def to_dict(self) -> dict:
        return asdict(self)
