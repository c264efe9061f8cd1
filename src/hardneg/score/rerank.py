"""Reranking: candidates ordered by their teacher scores (now :func:`hardneg.evaluate.run_from_candidates`)."""

from __future__ import annotations

from hardneg.candidates import Candidates


def reranked_run(candidates: Candidates, corpus_ids: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """A pytrec_eval run scoring each query's candidates by their teacher logit."""
    from hardneg.evaluate import run_from_candidates

    return run_from_candidates(candidates, corpus_ids, by="teacher")
