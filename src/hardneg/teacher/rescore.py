"""Teacher scores for every candidate and every positive: batched, length-sorted, cached.

All (query, document) pairs of a candidate set are scored in one pass: pairs are
deduplicated, sorted by text length across queries and cut into shards; each shard
is written to the run directory atomically (temp file + rename), so a killed run
resumes from its last shard and gives the same scores as an uninterrupted one. The
cache key holds the scorer's fingerprint (weights, max length, precision), the data
fingerprint and the pairs, so another teacher or other candidates never reuse stale
scores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.candidates import EMPTY, Candidates
from hardneg.errors import HardnegError
from hardneg.execute import Executor, ShardWork
from hardneg.store import RunDir, fingerprint, load_npy, sharded_compute

logger = logging.getLogger(__name__)


def candidate_pairs(candidates: Candidates, positives: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (query row, corpus row) pairs of all candidates and positives.

    Returns:
        ``(query_rows int64[m], doc_rows int64[m])``, sorted by query row then doc row.
    """
    n, _ = candidates.doc_ids.shape
    if len(positives) != n:
        raise HardnegError(
            f"{n} candidate rows but {len(positives)} queries with positives: the candidates were mined for other "
            "data. Pass the data they were mined from."
        )
    rows = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], candidates.doc_ids.shape)
    filled = candidates.doc_ids != EMPTY
    q = np.concatenate([rows[filled], np.repeat(np.arange(n, dtype=np.int64), [len(p) for p in positives])])
    d = np.concatenate([candidates.doc_ids[filled].astype(np.int64), *[np.asarray(p, np.int64) for p in positives]])
    width = int(d.max()) + 1 if len(d) else 1
    flat = np.unique(q * width + d)
    return flat // width, flat % width


def scatter_scores(
    candidates: Candidates,
    positives: tuple[np.ndarray, ...],
    query_rows: np.ndarray,
    doc_rows: np.ndarray,
    pair_scores: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Spread per-pair scores back onto the candidate and positive matrices.

    Returns:
        ``(teacher_scores float32[n, k], teacher_positive_scores float32[n, p])``, NaN
        for empty slots and padding.
    """
    width = int(doc_rows.max()) + 1 if len(doc_rows) else 1
    flat = query_rows * width + doc_rows  # sorted (candidate_pairs returns np.unique order)

    def lookup(q: np.ndarray, d: np.ndarray) -> np.ndarray:
        at = np.searchsorted(flat, q * width + d)
        return pair_scores[at]

    n, k = candidates.doc_ids.shape
    teacher = np.full((n, k), np.nan, dtype=np.float32)
    filled = candidates.doc_ids != EMPTY
    rows = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], (n, k))
    if filled.any():
        teacher[filled] = lookup(rows[filled], candidates.doc_ids[filled].astype(np.int64))
    p_width = max(max((len(p) for p in positives), default=0), 1)
    positive = np.full((n, p_width), np.nan, dtype=np.float32)
    for row, pos in enumerate(positives):
        if len(pos):
            positive[row, : len(pos)] = lookup(np.full(len(pos), row, np.int64), np.asarray(pos, np.int64))
    return teacher, positive


@dataclasses.dataclass(frozen=True)
class ScoreJob:
    """Teacher scoring as a shard job (:class:`~hardneg.execute.ShardJob`): ``(queries, documents)`` -> logits."""

    scorer: Any

    def load(self) -> Callable[[tuple[list[str], list[str]]], np.ndarray]:
        def score(pairs: tuple[list[str], list[str]]) -> np.ndarray:
            queries, documents = pairs
            scores = np.asarray(self.scorer.score_pairs(queries, documents, show_progress=False),
                                dtype=np.float32).reshape(-1)
            if len(scores) != len(queries):
                raise HardnegError(f"The scorer returned {len(scores)} scores for {len(queries)} pairs; expected "
                                   "one per pair.")
            return scores

        return score

    def portable(self) -> ScoreJob:
        """This job with a scorer that holds its model by path (a scorer without ``portable()`` travels as it is)."""
        portable = getattr(self.scorer, "portable", None)
        return self if portable is None else ScoreJob(portable())

    def model_dir(self) -> Path | None:
        """The local folder the scorer loads its model from (None: a hub name, or a scorer without one)."""
        local = getattr(self.scorer, "local_model_dir", None)
        return local() if local is not None else None

    def loading_from(self, folder: str | Path) -> ScoreJob:
        """This job with its scorer loading the same model from ``folder`` (a copy of :meth:`model_dir`)."""
        return ScoreJob(self.scorer.loading_from(folder))


def _pairs_digest(query_rows: np.ndarray, doc_rows: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(query_rows, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(doc_rows, dtype="<i8").tobytes())
    return digest.hexdigest()[:16]


def score_pairs_cached(
    scorer,
    query_texts: list[str] | tuple[str, ...],
    doc_texts: list[str] | tuple[str, ...],
    query_rows: np.ndarray,
    doc_rows: np.ndarray,
    *,
    key: str,
    run_dir: RunDir | None = None,
    shard_size: int = 4096,
    show_progress: bool = True,
    executor: Executor | None = None,
) -> np.ndarray:
    """Score pairs ``(query_texts[query_rows[i]], doc_texts[doc_rows[i]])`` in length-sorted shards.

    Pairs are ordered by character length (longest first) across all queries, so each
    shard, and each batch the scorer makes of it, holds pairs of similar length. With a
    ``run_dir`` every finished shard is saved atomically under ``key`` and reused by a
    rerun; the finished array replaces the shards. ``executor`` computes the shards
    (default: this process); the shards and their files do not depend on it.

    Returns:
        ``float32[len(query_rows)]`` in input order.
    """
    if shard_size < 1:
        raise HardnegError(f"shard_size must be at least 1, got {shard_size}.")
    final = parts_dir = None
    if run_dir is not None:
        final = run_dir.teacher_scores(key)
        cached = load_npy(final, what="teacher scores")
        if cached is not None and cached.shape == query_rows.shape:
            logger.info("reusing cached teacher scores %s", final.name)
            return cached
        parts_dir = run_dir.teacher_parts(key)
    q_len = np.fromiter((len(t) for t in query_texts), dtype=np.int64, count=len(query_texts))
    d_len = np.fromiter((len(t) for t in doc_texts), dtype=np.int64, count=len(doc_texts))
    order = np.argsort(-(q_len[query_rows] + d_len[doc_rows]), kind="stable")

    def pairs(idx: np.ndarray) -> tuple[list[str], list[str]]:
        return [query_texts[r] for r in query_rows[idx].tolist()], [doc_texts[r] for r in doc_rows[idx].tolist()]

    return sharded_compute(
        ShardWork(ScoreJob(scorer), pairs), order, shard_size=shard_size, parts_dir=parts_dir, final=final,
        desc="Teacher scoring", unit="pair", show_progress=show_progress, executor=executor,
    )


def rescore_candidates(
    candidates: Candidates,
    data,
    scorer,
    *,
    run_dir: RunDir | str | Path | None = None,
    shard_size: int = 4096,
    show_progress: bool = True,
    executor: Executor | None = None,
) -> Candidates:
    """Candidates with a teacher score for every candidate and every positive.

    Args:
        candidates: retrieved candidates of ``data`` (rows aligned with its queries).
        data: the :class:`~hardneg.data.RetrievalData` they were mined from.
        scorer: a :class:`~hardneg.teacher.scorer.Scorer`.
        run_dir: where pair scores are cached (resumable); None computes in memory.
        shard_size: pairs per saved shard (the resume granularity).
        executor: who scores the shards (:mod:`hardneg.execute`); default: this process.

    Returns:
        A copy with ``teacher_scores``, ``teacher_positive_scores`` and ``teacher``
        (the scorer's key) set. Scores are logits.
    """
    if run_dir is not None and not isinstance(run_dir, RunDir):
        run_dir = RunDir(run_dir)
    if tuple(candidates.query_ids) != tuple(data.queries.ids):
        raise HardnegError(
            "The candidates' query ids differ from the data's: they were mined for other data (or another "
            "--max-queries). Pass the data they were mined from."
        )
    query_rows, doc_rows = candidate_pairs(candidates, data.positives)
    scorer_key = scorer.key()
    key = fingerprint("teacher-pairs", scorer_key, data.fingerprint(), _pairs_digest(query_rows, doc_rows))
    pair_scores = score_pairs_cached(
        scorer, data.queries.texts, data.corpus.passages, query_rows, doc_rows,
        key=key, run_dir=run_dir, shard_size=shard_size, show_progress=show_progress, executor=executor,
    )
    teacher, positive = scatter_scores(candidates, data.positives, query_rows, doc_rows, pair_scores)
    return dataclasses.replace(candidates, teacher_scores=teacher, teacher_positive_scores=positive, teacher=scorer_key)
