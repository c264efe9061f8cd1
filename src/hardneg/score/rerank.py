"""Reranking: candidates ordered by their teacher scores."""

from __future__ import annotations

from hardneg.candidates import EMPTY, Candidates
from hardneg.errors import HardnegError


def reranked_run(candidates: Candidates, corpus_ids: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """A pytrec_eval run scoring each query's candidates by their teacher logit."""
    if candidates.teacher_scores is None:
        raise HardnegError("These candidates carry no teacher scores; rescore them first (rescore_candidates).")
    run: dict[str, dict[str, float]] = {}
    for qid, docs, scores in zip(candidates.query_ids, candidates.doc_ids.tolist(), candidates.teacher_scores.tolist()):
        run[qid] = {corpus_ids[d]: float(s) for d, s in zip(docs, scores) if d != EMPTY}
    return run

