"""From candidates to negatives: filters in a fixed order, each counted, then sampling."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from hardneg.candidates import EMPTY, Candidates, descending_order
from hardneg.errors import HardnegError
from hardneg.select import denoise as denoising
from hardneg.select import filters
from hardneg.select.config import SelectionConfig
from hardneg.select.sample import gumbel_top, pad_rows, simans_log_weights, take_top

logger = logging.getLogger(__name__)

PADDING_SOURCE = "random"

# Every selection stage, in the order select_negatives applies them (the report lists them so).
STAGES = ("positive_id", "positive_text", "duplicate_text", "rank_window", "max_score", "min_score",
          "absolute_margin", "relative_margin", "denoise", "not_sampled", "short_query", "padding")


@dataclass(frozen=True)
class Selection:
    """Negatives chosen for each kept query.

    Attributes:
        query_rows: ``int32[m]`` rows of the kept queries (into ``RetrievalData.queries``).
        negatives: ``int32[m, num_negatives]`` corpus rows in ranking order; ``-1`` only
            with ``if_short="keep"``.
        scores: ``float32[m, num_negatives]`` the candidates' scores (NaN for padding).
        sources: ``uint8[m, num_negatives]`` bit set over ``source_names`` saying which
            retrievers returned each negative.
        source_names: bit ``i`` of ``sources`` stands for ``source_names[i]``; the last
            name is ``random`` (padding).
        positive_scores: ``float32[m, p]`` candidate-similarity of each kept query's positives.
        n_candidates: non-empty candidate slots before any filter.
        dropped: per stage, in the order applied (:data:`STAGES`), how many candidates it
            removed: ``not_sampled`` counts survivors the sampler did not take,
            ``short_query`` the sampled negatives of queries dropped as short, and
            ``padding`` (negative: it adds) minus the random negatives padded into kept
            queries. ``n_candidates - sum(dropped.values())`` negatives are in the output.
        queries: counts of queries ``total`` = ``full`` (kept with enough negatives of
            their own) + ``padded`` (kept, filled up by padding) + ``short_kept`` (kept
            with fewer) + ``dropped``.
        score_source: ``retriever`` or ``teacher``: what ``scores`` and
            ``positive_scores`` hold.
        teacher_scores: ``float32[m, num_negatives]`` teacher logits of the negatives
            (NaN for padding), when the candidates were rescored; else None.
        teacher_positive_scores: ``float32[m, p]`` teacher logits of the positives, or None.
        denoised: ``int32[m, d]`` per kept query, the candidates the denoise rule dropped
            (in ranking order, ``-1``-padded); None without denoising.
        denoised_scores: ``float32[m, d]`` their teacher logits (why they were dropped).
        denoised_selection_scores: ``float32[m, d]`` their ``score_source`` scores.
        denoise_rule: the rule, in words (e.g. ``sigmoid(teacher logit) > 0.9``).
        promoted: True when the denoised candidates count as extra positives.
    """

    query_rows: np.ndarray
    negatives: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    source_names: tuple[str, ...]
    positive_scores: np.ndarray
    n_candidates: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)
    score_source: str = "retriever"
    teacher_scores: np.ndarray | None = None
    teacher_positive_scores: np.ndarray | None = None
    denoised: np.ndarray | None = None
    denoised_scores: np.ndarray | None = None
    denoised_selection_scores: np.ndarray | None = None
    denoise_rule: str = ""
    promoted: bool = False

    def promoted_positives(self, row: int) -> list[int]:
        """Corpus rows promoted to positives for kept row ``row`` (empty unless ``promoted``)."""
        if not self.promoted or self.denoised is None:
            return []
        return [d for d in self.denoised[row].tolist() if d != EMPTY]

    def source_labels(self, row: int) -> list[str]:
        """Human labels of row ``row``'s negatives, e.g. ``["bm25+dense", "dense"]``."""
        labels = []
        for bits in self.sources[row].tolist():
            labels.append("+".join(n for i, n in enumerate(self.source_names) if bits >> i & 1))
        return labels


def select_negatives(
    candidates: Candidates,
    positives: tuple[np.ndarray, ...],
    text_keys: np.ndarray,
    config: SelectionConfig,
) -> Selection:
    """Apply the selection pipeline.

    Order: drop positives by id → by normalised text → repeated texts → rank window
    (ranks among the surviving candidates) → ``max_score`` → ``min_score`` → absolute
    margin → relative margin → teacher denoise → sample ``num_negatives`` → handle
    short queries. With ``score_source="teacher"`` each row is first re-sorted by
    teacher logit, and every score step reads teacher logits.

    Args:
        candidates: retrieved candidates, rows aligned with ``positives``.
        positives: per query, its positive corpus rows.
        text_keys: ``int64[n_docs]`` normalised-text keys (:func:`hardneg.text.text_keys`).
        config: the selection settings.
    """
    if len(positives) != candidates.doc_ids.shape[0]:
        raise HardnegError(
            f"{candidates.doc_ids.shape[0]} candidate rows but {len(positives)} queries with positives: the candidates "
            "were mined for other data. Mine again, or use a fresh --run-dir."
        )
    if config.needs_teacher and candidates.teacher_scores is None:
        raise HardnegError(
            "This selection reads teacher scores (score_source='teacher' or a denoise rule), but the candidates "
            "carry none. Pass a cross-encoder (--cross-encoder MODEL, or Miner(..., teacher=CrossEncoderScorer(...))), "
            "or run `hardneg rescore RUN_DIR --cross-encoder MODEL` first."
        )
    if config.score_source == "teacher":
        candidates = candidates.reordered(descending_order(candidates.teacher_scores))
        scores, positive_scores = candidates.teacher_scores, candidates.teacher_positive_scores
    else:
        scores, positive_scores = candidates.scores, candidates.positive_scores
    doc_ids = candidates.doc_ids
    alive = doc_ids != EMPTY
    dropped: dict[str, int] = {}

    def drop(name: str, fails: np.ndarray) -> None:
        nonlocal alive
        hit = alive & fails
        dropped[name] = int(hit.sum())
        alive = alive & ~hit

    total = int(alive.sum())
    drop("positive_id", filters.is_positive(doc_ids, positives))
    if config.dedupe_texts:
        drop("positive_text", filters.has_positive_text(doc_ids, positives, text_keys))
        drop("duplicate_text", filters.repeats_earlier_text(doc_ids, alive, text_keys))
    if config.range_min or config.range_max is not None:
        drop("rank_window", filters.outside_rank_window(alive, config.range_min, config.range_max))
    if config.max_score is not None:
        drop("max_score", filters.above_max_score(scores, config.max_score))
    if config.min_score is not None:
        drop("min_score", filters.below_min_score(scores, config.min_score))

    positive_ref = filters.reference_positive_score(positive_scores)
    if config.needs_positive_scores and np.isnan(positive_ref).any():
        missing = candidates.query_ids[int(np.flatnonzero(np.isnan(positive_ref))[0])]
        raise HardnegError(
            f"Margins and SimANS need each query's positive score, but query {missing!r} has none. "
            "Candidates from this retriever carry no positive scores; use --retriever bm25 or dense."
        )
    if config.absolute_margin is not None:
        drop("absolute_margin", filters.within_absolute_margin(scores, positive_ref, config.absolute_margin))
    if config.relative_margin is not None:
        drop("relative_margin", filters.within_relative_margin(scores, positive_ref, config.relative_margin))
    denoised = None
    if config.denoise is not None:
        teacher_ref = filters.reference_positive_score(candidates.teacher_positive_scores)
        flagged = alive & denoising.teacher_says_relevant(
            candidates.teacher_scores, teacher_ref, config.denoise, config.denoise_threshold
        )
        denoised = denoising.flagged_lists(doc_ids, flagged, candidates.teacher_scores, scores)
        drop("denoise", flagged)

    rng = np.random.default_rng(config.seed)
    n = config.num_negatives
    if config.sampling == "top":
        cols = take_top(alive, n)
    elif config.sampling == "random":
        cols = gumbel_top(alive, np.zeros(alive.shape), n, rng)
    else:
        log_w = simans_log_weights(np.nan_to_num(scores, nan=0.0), positive_ref, config.simans_a, config.simans_b)
        cols = gumbel_top(alive, log_w, n, rng)
    dropped["not_sampled"] = int(alive.sum() - (cols >= 0).sum())

    rows = np.arange(doc_ids.shape[0])[:, None]
    safe = np.maximum(cols, 0)
    negatives = np.where(cols >= 0, doc_ids[rows, safe], EMPTY).astype(np.int32)
    neg_scores = np.where(cols >= 0, scores[rows, safe], np.nan).astype(np.float32)
    source_names = (*candidates.sources, PADDING_SOURCE)
    sources = np.zeros(cols.shape, dtype=np.uint8)
    for bit, name in enumerate(candidates.sources):
        found = candidates.source_ranks[name][rows, safe] >= 0
        sources |= np.where((cols >= 0) & found, np.uint8(1 << bit), np.uint8(0))

    def promoted_rows(r: int) -> np.ndarray:
        if denoised is None or not config.promote_denoised:
            return np.empty(0, np.int64)
        return denoised[0][r][denoised[0][r] != EMPTY]

    count = (cols >= 0).sum(axis=1)
    short = np.flatnonzero(count < n)
    keep = np.ones(doc_ids.shape[0], dtype=bool)
    added_count = np.zeros(doc_ids.shape[0], dtype=np.int64)
    if config.if_short == "drop":
        keep[short] = False
    elif config.if_short == "pad" and len(short):
        added = pad_rows(
            [negatives[r, : count[r]] for r in short],
            [
                text_keys[np.concatenate([positives[r], promoted_rows(r)]).astype(np.int64)]
                if config.dedupe_texts else np.empty(0, np.int64)
                for r in short
            ],
            text_keys if config.dedupe_texts else np.arange(len(text_keys), dtype=np.int64),
            n,
            rng,
        )
        pad_bit = np.uint8(1 << (len(source_names) - 1))
        for r, extra in zip(short, added):
            start = count[r]
            negatives[r, start : start + len(extra)] = extra
            sources[r, start : start + len(extra)] = pad_bit
            added_count[r] = len(extra)
            if start + len(extra) < n:
                keep[r] = False  # padding could not fill it either
    # the sampled negatives of dropped queries never reach the output; padding adds negatives
    dropped["short_query"] = int(count[~keep].sum())
    padded = int((keep & (added_count > 0)).sum())
    if config.if_short == "pad":
        dropped["padding"] = -int(added_count[keep].sum())
        if padded:
            logger.info("padded %d queries with random negatives", padded)
    query_rows = np.flatnonzero(keep).astype(np.int32)
    is_short = np.zeros(doc_ids.shape[0], dtype=bool)
    is_short[short] = True
    queries = {
        "total": int(doc_ids.shape[0]),
        "full": int((keep & ~is_short).sum()),
        "padded": padded,
        "short_kept": int((keep & is_short).sum()) - padded,
        "dropped": int((~keep).sum()),
    }
    logger.info("selected negatives for %d of %d queries (%d candidates)", len(query_rows), doc_ids.shape[0], total)
    teacher_negatives = None
    if candidates.teacher_scores is not None:
        teacher_negatives = np.where(cols >= 0, candidates.teacher_scores[rows, safe], np.nan).astype(np.float32)[query_rows]
    return Selection(
        query_rows=query_rows,
        negatives=negatives[query_rows],
        scores=neg_scores[query_rows],
        sources=sources[query_rows],
        source_names=source_names,
        positive_scores=positive_scores[query_rows],
        n_candidates=total,
        dropped=dropped,
        queries=queries,
        score_source=config.score_source,
        teacher_scores=teacher_negatives,
        teacher_positive_scores=(
            candidates.teacher_positive_scores[query_rows] if candidates.teacher_scores is not None else None
        ),
        denoised=denoised[0][query_rows] if denoised is not None else None,
        denoised_scores=denoised[1][query_rows] if denoised is not None else None,
        denoised_selection_scores=denoised[2][query_rows] if denoised is not None else None,
        denoise_rule=denoising.describe_rule(config.denoise, config.denoise_threshold) if config.denoise else "",
        promoted=config.promote_denoised,
    )
