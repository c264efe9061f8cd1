"""Retrieval metrics: nDCG@10, Recall@10/100, MRR@10 and MAP, computed by pytrec_eval.

Prepare once, apply many: an :class:`Evaluator` holds the qrels and scores any
number of runs (a training loop evaluates every refresh with the same object).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from hardneg.candidates import EMPTY, Candidates
from hardneg.errors import HardnegError

logger = logging.getLogger(__name__)

# our key -> (pytrec_eval measure, its result key)
MEASURES: dict[str, tuple[str, str]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10"),
    "recall@10": ("recall.10", "recall_10"),
    "recall@100": ("recall.100", "recall_100"),
    "mrr@10": ("recip_rank", "recip_rank"),  # computed on the run cut at 10
    "map": ("map", "map"),
}

Run = Mapping[str, Mapping[str, float]]


def _pytrec_eval():
    try:
        import pytrec_eval
    except ImportError as exc:
        raise HardnegError("Evaluation needs pytrec_eval: pip install pytrec-eval-terrier (or 'hardneg[eval]').") from exc
    return pytrec_eval


def cut(run: Run, k: int) -> dict[str, dict[str, float]]:
    """Keep each query's ``k`` best-scored documents (ties: document id order)."""
    out = {}
    for qid, docs in run.items():
        best = sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        out[qid] = dict(best)
    return out


class Evaluator:
    """Scores runs against fixed qrels.

    Args:
        qrels: ``{query_id: {doc_id: grade}}`` (grades > 0 are relevant).

    Queries in the qrels that a run does not mention count as zero, as in BEIR.
    """

    def __init__(self, qrels: Mapping[str, Mapping[str, int]]) -> None:
        if not qrels:
            raise HardnegError("No qrels to evaluate against: the split has no judged queries.")
        self.qrels = {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items()}
        self._build()

    def _build(self) -> None:
        pytrec_eval = _pytrec_eval()
        full = {m for key, (m, _) in MEASURES.items() if key != "mrr@10"}
        self._full = pytrec_eval.RelevanceEvaluator(self.qrels, full)
        self._rr = pytrec_eval.RelevanceEvaluator(self.qrels, {"recip_rank"})

    def __getstate__(self) -> dict:
        return {"qrels": self.qrels}  # pytrec_eval's evaluators do not pickle; they are rebuilt from the qrels

    def __setstate__(self, state: dict) -> None:
        self.qrels = state["qrels"]
        self._build()

    def per_query(self, run: Run) -> dict[str, dict[str, float]]:
        """Metrics per query id (every judged query, missing ones at 0)."""
        run = {q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if q in self.qrels}
        full = self._full.evaluate(run)
        rr = self._rr.evaluate(cut(run, 10))
        out = {}
        for qid in self.qrels:
            row = {}
            for key, (_, result_key) in MEASURES.items():
                source = rr if key == "mrr@10" else full
                row[key] = float(source.get(qid, {}).get(result_key, 0.0))
            out[qid] = row
        return out

    def evaluate(self, run: Run) -> dict[str, float]:
        """Mean of each metric over the judged queries."""
        per_query = self.per_query(run)
        return {key: float(np.mean([row[key] for row in per_query.values()])) for key in MEASURES}


def run_from_candidates(
    candidates: Candidates, corpus_ids: tuple[str, ...], *, by: str = "rank"
) -> dict[str, dict[str, float]]:
    """A pytrec_eval run from candidates.

    Args:
        by: ``rank`` scores each document by its rank in the candidate list (so
            retriever ties keep their order); ``teacher`` by its teacher logit (the
            teacher reranking the candidates; they must have been rescored).
    """
    if by not in ("rank", "teacher"):
        raise HardnegError(f"by must be rank or teacher; got {by!r}.")
    if by == "teacher" and candidates.teacher_scores is None:
        raise HardnegError("These candidates carry no teacher scores; rescore them first (rescore_candidates).")
    run: dict[str, dict[str, float]] = {}
    for i, (qid, row) in enumerate(zip(candidates.query_ids, candidates.doc_ids.tolist())):
        filled = [(col, d) for col, d in enumerate(row) if d != EMPTY]
        if by == "teacher":
            scores = candidates.teacher_scores[i]
            run[qid] = {corpus_ids[d]: float(scores[col]) for col, d in filled}
        else:
            run[qid] = {corpus_ids[d]: float(len(filled) - r) for r, (_, d) in enumerate(filled)}
    return run


def evaluate_retriever(
    retriever, data, *, depth: int = 100, run_dir=None, show_progress: bool = True
) -> dict[str, float]:
    """Retrieve ``depth`` documents per query of ``data`` and score them against its qrels.

    Positives stay in the ranking (this is evaluation, not mining). With ``run_dir`` (a
    :class:`~hardneg.store.RunDir`), embeddings and indexes are cached there and reused.
    """
    candidates = retriever.retrieve(data, depth, run_dir=run_dir, show_progress=show_progress)
    return Evaluator(data.qrels()).evaluate(run_from_candidates(candidates, data.corpus.ids))
