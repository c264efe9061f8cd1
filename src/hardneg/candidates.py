"""Candidates: per query, the top-k documents a retriever returned, as arrays.

A candidate list is what every later step reads: selection, rescoring, export and
the report. It is computed once and saved in the run directory ("mine once, filter
many").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.errors import HardnegError
from hardneg.store import artifact_path

logger = logging.getLogger(__name__)

EMPTY = -1  # doc id of an empty slot (a query with fewer than k hits)


@dataclass(frozen=True)
class Candidates:
    """Top-k candidates per query.

    Attributes:
        query_ids: id of each row's query, ``n`` of them.
        doc_ids: ``int32[n, k]`` corpus rows in ranking order; ``-1`` marks an empty slot.
        scores: ``float32[n, k]`` the similarity that score filters and margins use; NaN
            for empty slots. For ``bm25`` the BM25 score, for ``dense`` and ``hybrid`` the
            embedding similarity.
        positive_scores: ``float32[n, p]`` the same similarity for each query's positives,
            aligned with ``RetrievalData.positives``; NaN-padded to the widest row.
        source_ranks: per retriever name, ``int32[n, k]`` the candidate's 0-based rank in
            that retriever's list, ``-1`` where that retriever did not return it.
        source_scores: per retriever name, ``float32[n, k]`` that retriever's score, NaN
            where it did not return the candidate.
        method: how the list was made: ``bm25``, ``dense``, ``hybrid-rrf`` or ``hybrid-union``.
        teacher_scores: optional ``float32[n, k]`` cross-encoder teacher logit of each
            candidate, NaN for empty slots (:func:`hardneg.teacher.rescore.rescore_candidates`).
        teacher_positive_scores: optional ``float32[n, p]`` teacher logit of each positive,
            aligned with ``positive_scores``.
        teacher: fingerprint of the teacher that made the teacher scores; ``""`` without.
        search_quality: how close an approximate index came to exact search
            (:func:`hardneg.retrieve.recall.measure_recall`: index kind, depth, sampled
            queries, ``recall_vs_exact``); empty for exact search and BM25.
    """

    query_ids: tuple[str, ...]
    doc_ids: np.ndarray
    scores: np.ndarray
    positive_scores: np.ndarray
    source_ranks: Mapping[str, np.ndarray] = field(default_factory=dict)
    source_scores: Mapping[str, np.ndarray] = field(default_factory=dict)
    method: str = ""
    teacher_scores: np.ndarray | None = None
    teacher_positive_scores: np.ndarray | None = None
    teacher: str = ""
    search_quality: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, k = self.doc_ids.shape
        if self.scores.shape != (n, k):
            raise HardnegError(f"Candidates: scores shape {self.scores.shape} != doc_ids shape {(n, k)}")
        if len(self.query_ids) != n or self.positive_scores.shape[0] != n:
            raise HardnegError(
                f"Candidates: {len(self.query_ids)} query ids and {self.positive_scores.shape[0]} positive-score "
                f"rows for {n} candidate rows"
            )
        for name, ranks in self.source_ranks.items():
            if ranks.shape != (n, k) or self.source_scores[name].shape != (n, k):
                raise HardnegError(f"Candidates: provenance arrays of {name!r} do not have shape {(n, k)}")
        if (self.teacher_scores is None) != (self.teacher_positive_scores is None):
            raise HardnegError("Candidates: teacher_scores and teacher_positive_scores come together; pass both or neither.")
        if self.teacher_scores is not None:
            if self.teacher_scores.shape != (n, k):
                raise HardnegError(f"Candidates: teacher_scores shape {self.teacher_scores.shape} != doc_ids shape {(n, k)}")
            if self.teacher_positive_scores.shape[0] != n:
                raise HardnegError(
                    f"Candidates: {self.teacher_positive_scores.shape[0]} teacher positive-score rows for {n} candidate rows"
                )

    @property
    def depth(self) -> int:
        """k: the number of candidate slots per query."""
        return int(self.doc_ids.shape[1])

    @property
    def sources(self) -> tuple[str, ...]:
        """Names of the retrievers that contributed, in a fixed order."""
        return tuple(self.source_ranks)

    @classmethod
    def from_single(
        cls,
        name: str,
        query_ids: tuple[str, ...],
        doc_ids: np.ndarray,
        scores: np.ndarray,
        positive_scores: np.ndarray,
        *,
        search_quality: Mapping[str, Any] | None = None,
    ) -> Candidates:
        """Candidates from one retriever: provenance is the retriever itself."""
        n, k = doc_ids.shape
        ranks = np.broadcast_to(np.arange(k, dtype=np.int32), (n, k)).copy()
        ranks[doc_ids == EMPTY] = -1
        return cls(
            query_ids=query_ids,
            doc_ids=doc_ids.astype(np.int32, copy=False),
            scores=scores.astype(np.float32, copy=False),
            positive_scores=positive_scores.astype(np.float32, copy=False),
            source_ranks={name: ranks},
            source_scores={name: scores.astype(np.float32, copy=True)},
            method=name,
            search_quality=dict(search_quality or {}),
        )

    def reordered(self, order: np.ndarray) -> Candidates:
        """The same candidates with each row's columns permuted by ``order`` (``int[n, k]``).

        Every per-candidate array moves along (scores, provenance, teacher scores);
        positive scores stay as they are.
        """
        import dataclasses

        take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
        return dataclasses.replace(
            self,
            doc_ids=take(self.doc_ids),
            scores=take(self.scores),
            source_ranks={n: take(r) for n, r in self.source_ranks.items()},
            source_scores={n: take(v) for n, v in self.source_scores.items()},
            teacher_scores=take(self.teacher_scores) if self.teacher_scores is not None else None,
        )

    def save(self, path: str | Path) -> None:
        """Write as Parquet, one row per query, atomically, with an integrity record (``path.sum``)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        def fixed(arr: np.ndarray) -> pa.Array:
            n, width = arr.shape
            return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(arr).reshape(-1)), width)

        columns = {
            "query_id": pa.array(list(self.query_ids), pa.string()),
            "doc_ids": fixed(self.doc_ids),
            "scores": fixed(self.scores),
            "positive_scores": fixed(self.positive_scores),
        }
        for name in self.sources:
            columns[f"rank:{name}"] = fixed(self.source_ranks[name])
            columns[f"score:{name}"] = fixed(self.source_scores[name])
        if self.teacher_scores is not None:
            columns["teacher_scores"] = fixed(self.teacher_scores.astype(np.float32, copy=False))
            columns["teacher_positive_scores"] = fixed(self.teacher_positive_scores.astype(np.float32, copy=False))
        meta = {"hardneg.method": self.method}
        if self.teacher_scores is not None:
            meta["hardneg.teacher"] = self.teacher
        if self.search_quality:
            meta["hardneg.search_quality"] = json.dumps(dict(self.search_quality), sort_keys=True)
        table = pa.table(columns).replace_schema_metadata(meta)
        with artifact_path(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def load(cls, path: str | Path) -> Candidates:
        """Read what :meth:`save` wrote."""
        import pyarrow.parquet as pq

        path = Path(path)
        if not path.is_file():
            raise HardnegError(f"No candidates file at {path}; run `hardneg mine` first to create it.")
        table = pq.read_table(path)

        def matrix(column: str, dtype: type) -> np.ndarray:
            col = table.column(column).combine_chunks()
            width = col.type.list_size
            return np.asarray(col.flatten(), dtype=dtype).reshape(len(col), width)

        names = [c.split(":", 1)[1] for c in table.column_names if c.startswith("rank:")]
        meta = table.schema.metadata or {}
        has_teacher = "teacher_scores" in table.column_names
        return cls(
            query_ids=tuple(table.column("query_id").to_pylist()),
            doc_ids=matrix("doc_ids", np.int32),
            scores=matrix("scores", np.float32),
            positive_scores=matrix("positive_scores", np.float32),
            source_ranks={n: matrix(f"rank:{n}", np.int32) for n in names},
            source_scores={n: matrix(f"score:{n}", np.float32) for n in names},
            method=meta.get(b"hardneg.method", b"").decode(),
            teacher_scores=matrix("teacher_scores", np.float32) if has_teacher else None,
            teacher_positive_scores=matrix("teacher_positive_scores", np.float32) if has_teacher else None,
            teacher=meta.get(b"hardneg.teacher", b"").decode() if has_teacher else "",
            search_quality=json.loads(meta.get(b"hardneg.search_quality", b"{}").decode()),
        )


def positive_score_matrix(positives: tuple[np.ndarray, ...], score_of: np.ndarray) -> np.ndarray:
    """Pack per-query positive scores (a flat array in positives order) into a NaN-padded matrix."""
    width = max((len(p) for p in positives), default=0)
    out = np.full((len(positives), max(width, 1)), np.nan, dtype=np.float32)
    offset = 0
    for row, pos in enumerate(positives):
        out[row, : len(pos)] = score_of[offset : offset + len(pos)]
        offset += len(pos)
    return out


def descending_order(scores: np.ndarray) -> np.ndarray:
    """Per row, column indices by descending score, NaN (empty slots) last; stable on ties.

    Returns:
        ``int64[n, k]``.
    """
    key = np.where(np.isnan(scores), np.inf, -scores.astype(np.float64))
    return np.argsort(key, axis=1, kind="stable")
