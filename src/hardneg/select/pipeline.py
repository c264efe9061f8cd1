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
from hardneg.select.sample import pad_rows
from hardneg.select.stages import SAMPLERS, STAGES, Pool, apply_filters, needs_positive_scores, needs_teacher

logger = logging.getLogger(__name__)

PADDING_SOURCE = "random"

__all__ = ["PADDING_SOURCE", "STAGES", "Selection", "select_negatives"]


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
    """Filter, sample, fill short queries, gather: candidates become negatives.

    The filters run in the order of :data:`hardneg.select.stages.FILTERS`: drop
    positives by id → by normalised text → repeated texts → rank window (ranks among
    the surviving candidates) → ``max_score`` → ``min_score`` → absolute margin →
    relative margin → teacher denoise; then ``num_negatives`` are sampled and short
    queries handled. With ``score_source="teacher"`` each row is first re-sorted by
    teacher logit, and every score step reads teacher logits.

    Args:
        candidates: retrieved candidates, rows aligned with ``positives``.
        positives: per query, its positive corpus rows.
        text_keys: ``int64[n_docs]`` normalised-text keys (:func:`hardneg.text.text_keys`).
        config: the selection settings.
    """
    candidates, pool = _prepare(candidates, positives, text_keys, config)
    alive, dropped, hits = apply_filters(pool, config)
    rng = np.random.default_rng(config.seed)
    cols = SAMPLERS[config.sampling].draw(alive, pool, config, rng)
    dropped["not_sampled"] = int(alive.sum() - (cols >= 0).sum())
    picked = _gather(candidates, pool, cols)
    denoised = None
    if "denoise" in hits:
        denoised = denoising.flagged_lists(pool.doc_ids, hits["denoise"], candidates.teacher_scores, pool.scores)
    promoted = denoised[0] if denoised is not None and config.promote_denoised else None
    keep, queries = _fill_short(picked, cols, pool, promoted, config, rng, dropped)
    total = int((pool.doc_ids != EMPTY).sum())
    query_rows = np.flatnonzero(keep).astype(np.int32)
    logger.info("selected negatives for %d of %d queries (%d candidates)", len(query_rows), len(keep), total)
    return Selection(
        query_rows=query_rows,
        negatives=picked.negatives[query_rows],
        scores=picked.scores[query_rows],
        sources=picked.sources[query_rows],
        source_names=picked.source_names,
        positive_scores=(
            candidates.teacher_positive_scores if config.score_source == "teacher" else candidates.positive_scores
        )[query_rows],
        n_candidates=total,
        dropped=dropped,
        queries=queries,
        score_source=config.score_source,
        teacher_scores=picked.teacher_scores[query_rows] if picked.teacher_scores is not None else None,
        teacher_positive_scores=(
            candidates.teacher_positive_scores[query_rows] if candidates.teacher_scores is not None else None
        ),
        denoised=denoised[0][query_rows] if denoised is not None else None,
        denoised_scores=denoised[1][query_rows] if denoised is not None else None,
        denoised_selection_scores=denoised[2][query_rows] if denoised is not None else None,
        denoise_rule=denoising.describe_rule(config.denoise, config.denoise_threshold) if config.denoise else "",
        promoted=config.promote_denoised,
    )


def _prepare(
    candidates: Candidates, positives: tuple[np.ndarray, ...], text_keys: np.ndarray, config: SelectionConfig
) -> tuple[Candidates, Pool]:
    """Check that the candidates carry what ``config`` reads; re-sort by teacher logit when it ranks by them."""
    if len(positives) != candidates.doc_ids.shape[0]:
        raise HardnegError(
            f"{candidates.doc_ids.shape[0]} candidate rows but {len(positives)} queries with positives: the candidates "
            "were mined for other data. Mine again, or use a fresh --run-dir."
        )
    if needs_teacher(config) and candidates.teacher_scores is None:
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
    positive_ref = filters.reference_positive_score(positive_scores)
    if needs_positive_scores(config) and np.isnan(positive_ref).any():
        missing = candidates.query_ids[int(np.flatnonzero(np.isnan(positive_ref))[0])]
        raise HardnegError(
            f"Margins and SimANS need each query's positive score, but query {missing!r} has none. "
            "Candidates from this retriever carry no positive scores; use --retriever bm25 or dense."
        )
    teacher_ref = None
    if candidates.teacher_positive_scores is not None:
        teacher_ref = filters.reference_positive_score(candidates.teacher_positive_scores)
    pool = Pool(candidates.doc_ids, positives, text_keys, scores, positive_ref, candidates.teacher_scores, teacher_ref)
    return candidates, pool


@dataclass
class _Picked:
    """The sampled negatives of every query (before short queries are dropped), mutable for padding."""

    negatives: np.ndarray
    scores: np.ndarray
    sources: np.ndarray
    source_names: tuple[str, ...]
    teacher_scores: np.ndarray | None


def _gather(candidates: Candidates, pool: Pool, cols: np.ndarray) -> _Picked:
    """Doc ids, scores, source bits and teacher logits at the sampled columns (``-1``/NaN where none)."""
    rows = np.arange(pool.doc_ids.shape[0])[:, None]
    safe = np.maximum(cols, 0)
    taken = cols >= 0
    sources = np.zeros(cols.shape, dtype=np.uint8)
    for bit, name in enumerate(candidates.sources):
        found = candidates.source_ranks[name][rows, safe] >= 0
        sources |= np.where(taken & found, np.uint8(1 << bit), np.uint8(0))
    teacher = None
    if candidates.teacher_scores is not None:
        teacher = np.where(taken, candidates.teacher_scores[rows, safe], np.nan).astype(np.float32)
    return _Picked(
        negatives=np.where(taken, pool.doc_ids[rows, safe], EMPTY).astype(np.int32),
        scores=np.where(taken, pool.scores[rows, safe], np.nan).astype(np.float32),
        sources=sources,
        source_names=(*candidates.sources, PADDING_SOURCE),
        teacher_scores=teacher,
    )


def _fill_short(
    picked: _Picked,
    cols: np.ndarray,
    pool: Pool,
    promoted: np.ndarray | None,
    config: SelectionConfig,
    rng: np.random.Generator,
    dropped: dict[str, int],
) -> tuple[np.ndarray, dict[str, int]]:
    """Drop, pad or keep the queries with fewer than ``num_negatives``; count what that did.

    Returns:
        ``keep`` (``bool[n]``) and the query counts; ``dropped`` gains ``short_query``
        (and ``padding``, negative: it adds).
    """
    n = config.num_negatives
    count = (cols >= 0).sum(axis=1)
    short = np.flatnonzero(count < n)
    keep = np.ones(cols.shape[0], dtype=bool)
    added = np.zeros(cols.shape[0], dtype=np.int64)
    if config.if_short == "drop":
        keep[short] = False
    elif config.if_short == "pad" and len(short):
        _pad(picked, short, count, pool, promoted, config, rng, keep, added)
    # the sampled negatives of dropped queries never reach the output; padding adds negatives
    dropped["short_query"] = int(count[~keep].sum())
    padded = int((keep & (added > 0)).sum())
    if config.if_short == "pad":
        dropped["padding"] = -int(added[keep].sum())
        if padded:
            logger.info("padded %d queries with random negatives", padded)
    is_short = np.zeros(cols.shape[0], dtype=bool)
    is_short[short] = True
    queries = {
        "total": int(cols.shape[0]),
        "full": int((keep & ~is_short).sum()),
        "padded": padded,
        "short_kept": int((keep & is_short).sum()) - padded,
        "dropped": int((~keep).sum()),
    }
    return keep, queries


def _pad(
    picked: _Picked,
    short: np.ndarray,
    count: np.ndarray,
    pool: Pool,
    promoted: np.ndarray | None,
    config: SelectionConfig,
    rng: np.random.Generator,
    keep: np.ndarray,
    added: np.ndarray,
) -> None:
    """Fill short rows with random documents (never a positive's text, nor a promoted one's); in place."""
    keys = pool.text_keys

    def forbidden(r: int) -> np.ndarray:
        if not config.dedupe_texts:
            return np.empty(0, np.int64)
        extra = promoted[r][promoted[r] != EMPTY] if promoted is not None else np.empty(0, np.int64)
        return keys[np.concatenate([pool.positives[r], extra]).astype(np.int64)]

    n = config.num_negatives
    extras = pad_rows(
        [picked.negatives[r, : count[r]] for r in short],
        [forbidden(r) for r in short],
        keys if config.dedupe_texts else np.arange(len(keys), dtype=np.int64),
        n,
        rng,
    )
    pad_bit = np.uint8(1 << (len(picked.source_names) - 1))
    for r, extra in zip(short, extras):
        start = count[r]
        picked.negatives[r, start : start + len(extra)] = extra
        picked.sources[r, start : start + len(extra)] = pad_bit
        added[r] = len(extra)
        if start + len(extra) < n:
            keep[r] = False  # padding could not fill it either
