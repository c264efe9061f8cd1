"""The selection stages, declared in one table, and the samplers, in one dict.

A filter stage names its report name, its mask function (True where a candidate is
dropped), when it is on, what it reads beyond the retriever's scores (each query's
positive score, teacher scores) and the flag that loosens it. Adding a filter is one
function in :mod:`hardneg.select.filters` and one row in :data:`FILTERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hardneg.candidates import EMPTY
from hardneg.select import denoise, filters
from hardneg.select.config import SelectionConfig
from hardneg.select.sample import gumbel_top, simans_log_weights, take_top


@dataclass(frozen=True)
class Pool:
    """What the stages read: the candidates of every query and their reference scores.

    Attributes:
        doc_ids: ``int32[n, k]`` candidate corpus rows (``-1`` empty).
        positives: per query, its positive corpus rows.
        text_keys: ``int64[n_docs]`` normalised-text key per corpus row.
        scores: ``float32[n, k]`` the scores selection reads (retriever's or teacher's).
        positive_ref: ``float32[n]`` each query's lowest positive score, same source.
        teacher_scores: ``float32[n, k]`` teacher logits, or None.
        teacher_ref: ``float32[n]`` each query's lowest positive teacher logit, or None.
    """

    doc_ids: np.ndarray
    positives: tuple[np.ndarray, ...]
    text_keys: np.ndarray
    scores: np.ndarray
    positive_ref: np.ndarray
    teacher_scores: np.ndarray | None = None
    teacher_ref: np.ndarray | None = None


Mask = Callable[[Pool, np.ndarray, SelectionConfig], np.ndarray]


@dataclass(frozen=True)
class Stage:
    """One filter: ``mask(pool, alive, config)`` is True where a candidate fails it.

    Attributes:
        name: the stage's name in the report's drop counts.
        mask: the rule; ``alive`` is what survived the stages before it.
        active: whether ``config`` turns the stage on.
        needs_positive_scores: reads each query's positive score (margins).
        needs_teacher: reads teacher scores (the candidates must be rescored).
        loosen: the CLI flag that loosens it, for advice when a run keeps nothing.
    """

    name: str
    mask: Mask
    active: Callable[[SelectionConfig], bool]
    needs_positive_scores: bool = False
    needs_teacher: bool = False
    loosen: str = ""


def _always(config: SelectionConfig) -> bool:
    return True


FILTERS: tuple[Stage, ...] = (
    Stage("positive_id", lambda p, alive, c: filters.is_positive(p.doc_ids, p.positives), _always),
    Stage("positive_text", lambda p, alive, c: filters.has_positive_text(p.doc_ids, p.positives, p.text_keys),
          lambda c: c.dedupe_texts),
    Stage("duplicate_text", lambda p, alive, c: filters.repeats_earlier_text(p.doc_ids, alive, p.text_keys),
          lambda c: c.dedupe_texts, loosen="--keep-duplicate-texts"),
    Stage("rank_window", lambda p, alive, c: filters.outside_rank_window(alive, c.range_min, c.range_max),
          lambda c: bool(c.range_min) or c.range_max is not None, loosen="--range-min/--range-max"),
    Stage("max_score", lambda p, alive, c: filters.above_max_score(p.scores, c.max_score),
          lambda c: c.max_score is not None, loosen="--max-score"),
    Stage("min_score", lambda p, alive, c: filters.below_min_score(p.scores, c.min_score),
          lambda c: c.min_score is not None, loosen="--min-score"),
    Stage("absolute_margin",
          lambda p, alive, c: filters.within_absolute_margin(p.scores, p.positive_ref, c.absolute_margin),
          lambda c: c.absolute_margin is not None, needs_positive_scores=True, loosen="--absolute-margin"),
    Stage("relative_margin",
          lambda p, alive, c: filters.within_relative_margin(p.scores, p.positive_ref, c.relative_margin),
          lambda c: c.relative_margin is not None, needs_positive_scores=True,
          loosen="--relative-margin (a smaller one, or none)"),
    Stage("denoise",
          lambda p, alive, c: denoise.teacher_says_relevant(p.teacher_scores, p.teacher_ref, c.denoise,
                                                            c.denoise_threshold),
          lambda c: c.denoise is not None, needs_teacher=True, loosen="--denoise-threshold"),
)

# Counted after the filters: what follows from them, not rules of their own.
AFTER_FILTERS = ("not_sampled", "short_query", "padding")

# Every selection stage, in the order select_negatives applies them (the report lists them so).
STAGES: tuple[str, ...] = tuple(stage.name for stage in FILTERS) + AFTER_FILTERS

# The flag that loosens each filter, for advice when a run keeps nothing.
LOOSEN: dict[str, str] = {stage.name: stage.loosen for stage in FILTERS if stage.loosen}


def apply_filters(pool: Pool, config: SelectionConfig) -> tuple[np.ndarray, dict[str, int], dict[str, np.ndarray]]:
    """Run the active filters in table order.

    Returns:
        ``alive`` (``bool[n, k]``, the survivors), the number each stage dropped, and
        each stage's ``bool[n, k]`` of the candidates it dropped.
    """
    alive = pool.doc_ids != EMPTY
    dropped: dict[str, int] = {}
    hits: dict[str, np.ndarray] = {}
    for stage in FILTERS:
        if not stage.active(config):
            continue
        hit = alive & stage.mask(pool, alive, config)
        dropped[stage.name] = int(hit.sum())
        hits[stage.name] = hit
        alive = alive & ~hit
    return alive, dropped, hits


@dataclass(frozen=True)
class Sampler:
    """Draws ``n`` survivors per row: ``draw(alive, pool, config, rng)`` -> ``int64[rows, n]`` columns.

    Columns come in ranking order, ``-1``-padded where a row has fewer survivors.
    """

    draw: Callable[[np.ndarray, Pool, SelectionConfig, np.random.Generator], np.ndarray]
    needs_positive_scores: bool = False


def _simans(alive: np.ndarray, pool: Pool, config: SelectionConfig, rng: np.random.Generator) -> np.ndarray:
    log_w = simans_log_weights(np.nan_to_num(pool.scores, nan=0.0), pool.positive_ref, config.simans_a, config.simans_b)
    return gumbel_top(alive, log_w, config.num_negatives, rng)


SAMPLERS: dict[str, Sampler] = {
    "top": Sampler(lambda alive, pool, c, rng: take_top(alive, c.num_negatives)),
    "random": Sampler(lambda alive, pool, c, rng: gumbel_top(alive, np.zeros(alive.shape), c.num_negatives, rng)),
    "simans": Sampler(_simans, needs_positive_scores=True),
}


def needs_positive_scores(config: SelectionConfig) -> bool:
    """True when an active stage or the sampler reads each query's positive score."""
    return SAMPLERS[config.sampling].needs_positive_scores or any(
        stage.needs_positive_scores for stage in FILTERS if stage.active(config)
    )


def needs_teacher(config: SelectionConfig) -> bool:
    """True when selection reads teacher scores: ranking by them, or an active stage that needs them."""
    return config.score_source == "teacher" or any(stage.needs_teacher for stage in FILTERS if stage.active(config))
