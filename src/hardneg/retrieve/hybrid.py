"""Hybrid candidates: BM25 and dense lists fused by reciprocal rank or union."""

from __future__ import annotations

import logging

import numpy as np

from hardneg.candidates import EMPTY, Candidates
from hardneg.choices import FUSIONS, Fusion, check_choice
from hardneg.retrieve.bm25 import BM25Retriever
from hardneg.retrieve.dense import DenseRetriever
from hardneg.store import fingerprint

logger = logging.getLogger(__name__)



def fuse(
    lists: dict[str, tuple[np.ndarray, np.ndarray]],
    depth: int,
    *,
    fusion: Fusion = "rrf",
    rrf_k: int = 60,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fuse per-query ranked lists, keeping each candidate's provenance.

    Args:
        lists: per source, ``(doc_ids int32[n, k], scores float32[n, k])`` best first,
            ``-1`` for empty slots.
        depth: width of the fused list.
        fusion: ``rrf`` orders by ``sum_s 1 / (rrf_k + rank_s + 1)`` (ties: lower doc
            id first); ``union`` keeps every candidate in doc-id order, for the caller
            to re-order by a score of its choice.

    Returns:
        ``(doc_ids int32[n, depth], source_ranks, source_scores)``.

    References:
        Cormack, Clarke, Buettcher, "Reciprocal rank fusion outperforms Condorcet and
        individual rank learning methods", SIGIR 2009.
    """
    check_choice("fusion", fusion, FUSIONS)
    names = list(lists)
    n = next(iter(lists.values()))[0].shape[0]
    out_ids = np.full((n, depth), EMPTY, dtype=np.int32)
    ranks = {s: np.full((n, depth), -1, dtype=np.int32) for s in names}
    scores = {s: np.full((n, depth), np.nan, dtype=np.float32) for s in names}
    for row in range(n):
        hits: dict[int, dict[str, tuple[int, float]]] = {}
        for s in names:
            ids, sc = lists[s]
            for rank, (doc, score) in enumerate(zip(ids[row].tolist(), sc[row].tolist())):
                if doc != EMPTY:
                    hits.setdefault(doc, {})[s] = (rank, score)
        if fusion == "rrf":
            key = {d: -sum(1.0 / (rrf_k + r + 1) for r, _ in h.values()) for d, h in hits.items()}
            ordered = sorted(hits, key=lambda d: (key[d], d))
        else:
            ordered = sorted(hits)  # the caller re-orders by similarity
        ordered = ordered[:depth]
        out_ids[row, : len(ordered)] = ordered
        for col, doc in enumerate(ordered):
            for s, (rank, score) in hits[doc].items():
                ranks[s][row, col] = rank
                scores[s][row, col] = score
    return out_ids, ranks, scores


class HybridRetriever:
    """BM25 + dense candidates in one list.

    Filters and margins act on the dense similarity, which is computed for every
    candidate (also those only BM25 found), so hybrid lists support every filter.
    """

    name = "hybrid"

    def __init__(
        self, bm25: BM25Retriever, dense: DenseRetriever, *, fusion: Fusion = "rrf", rrf_k: int = 60
    ) -> None:
        check_choice("fusion", fusion, FUSIONS)
        self.bm25, self.dense, self.fusion, self.rrf_k = bm25, dense, fusion, rrf_k

    def key(self) -> str:
        return fingerprint("hybrid", self.bm25.key(), self.dense.key(), self.fusion, self.rrf_k)

    def dense_part(self) -> DenseRetriever:
        """Its dense retriever (:class:`~hardneg.retrieve.base.DenseBacked`)."""
        return self.dense

    def with_dense_part(self, dense: DenseRetriever) -> HybridRetriever:
        """A copy with ``dense`` in place of its dense retriever; the BM25 part is shared."""
        return HybridRetriever(self.bm25, dense, fusion=self.fusion, rrf_k=self.rrf_k)

    def retrieve(self, data, depth: int, *, run_dir=None, show_progress: bool = True) -> Candidates:
        lexical = self.bm25.retrieve(data, depth, run_dir=run_dir, show_progress=show_progress)
        queries, docs = self.dense.embed(data, run_dir=run_dir, show_progress=show_progress)
        semantic = self.dense.search(data, queries, docs, depth, show_progress=show_progress)
        width = depth if self.fusion == "rrf" else 2 * depth
        ids, ranks, scores = fuse(
            {"bm25": (lexical.doc_ids, lexical.scores), "dense": (semantic.doc_ids, semantic.scores)},
            width,
            fusion=self.fusion,
            rrf_k=self.rrf_k,
        )
        similarity = similarities(queries, docs, ids)
        if self.fusion == "union":
            order = np.argsort(np.where(ids == EMPTY, np.inf, -similarity), axis=1, kind="stable")
            ids, similarity = np.take_along_axis(ids, order, 1), np.take_along_axis(similarity, order, 1)
            ranks = {s: np.take_along_axis(r, order, 1) for s, r in ranks.items()}
            scores = {s: np.take_along_axis(r, order, 1) for s, r in scores.items()}
        return Candidates(
            query_ids=data.queries.ids,
            doc_ids=ids,
            scores=similarity,
            positive_scores=semantic.positive_scores,
            source_ranks=ranks,
            source_scores=scores,
            method=f"hybrid-{self.fusion}",
            search_quality=semantic.search_quality,
        )


def similarities(queries: np.ndarray, docs: np.ndarray, doc_ids: np.ndarray) -> np.ndarray:
    """``float32[n, k]`` inner product of each query with its candidates (NaN for empty slots), by the fixed
    kernel dense search scores with (:func:`~hardneg.retrieve.exact.exact_scores`)."""
    from hardneg.retrieve.exact import exact_scores

    return exact_scores(queries, docs, doc_ids)
