"""Refresh scope: which documents an ANCE refresh re-encodes, and how its results map back.

A full refresh re-encodes the whole corpus. Between two refreshes the model moves a
little, so the documents that can become a training query's hard negative are, in
practice, those near the top of its candidate list at the last full mining. A
``pool``-scope refresh therefore re-encodes only the union of the training queries'
top-``depth`` candidates from the last full mining plus their positives (the
selection's positive-aware filters compare candidates with the positives' scores),
searches that sub-corpus with the refreshed model, and maps the candidate rows back
to corpus rows. A query whose new neighbours lie outside the pool simply gets its
candidates from the pool. Every ``full_every``-th refresh is full again, and its
candidates give the next pools. Where that mining's document embeddings are at hand
(its run directory), the pool is found better and about as cheaply by
:func:`fresh_query_pool`: the queries, embedded by the current model, searched among
those stale document embeddings (ANCE's index, read with fresh queries).

Which training queries: only the examples trained on before the next refresh consume
what a refresh mines, so when the trainer can say which those are (its batch sampler
plans the epoch's order ahead, :meth:`hardneg.train.sampler.make_batch_sampler`), a
pool-scope refresh re-mines just those queries, over just their pool; the others keep
their negatives until the refresh before their turn. Each query's negatives are then
as fresh when used as under a full refresh, and the pool's size follows the refresh
interval (steps × batch size × depth) instead of the number of training queries.

Everything here is numpy and plain Python; the embedding cache stays correct by
construction: its key hashes the texts encoded, so a sub-corpus encode never reads
or writes the full corpus' file (:func:`hardneg.retrieve.dense.embedding_key`).

References:
    Xiong et al., "Approximate Nearest Neighbor Negative Contrastive Learning for
    Dense Text Retrieval", ICLR 2021 (the refresh whose cost this cuts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from hardneg.candidates import EMPTY
from hardneg.data import Corpus, RetrievalData
from hardneg.errors import HardnegError

SCOPES = ("pool", "full")


@dataclass(frozen=True)
class Scope:
    """What one pool-scope refresh mines: corpus ``documents`` (sorted unique rows) for ``queries``
    (sorted unique query rows; None: every training query); ``pool`` says how the documents were found
    (``candidates``: :func:`pool_scope`; ``fresh-queries``: :func:`fresh_query_pool`)."""

    documents: np.ndarray
    queries: np.ndarray | None = None
    pool: str = "candidates"


def pool_scope(candidate_rows: np.ndarray, positives: Sequence[np.ndarray], depth: int) -> np.ndarray:
    """The corpus rows a pool-scope refresh re-encodes.

    Args:
        candidate_rows: ``int32[n_queries, k]`` corpus rows of each query's candidates
            from the last full mining, in ranking order (``-1`` = empty slot).
        positives: per query, its positive corpus rows.
        depth: how many of each query's top candidates join the pool.

    Returns:
        ``int64`` sorted unique rows: every query's top ``depth`` candidates and every positive.
    """
    if depth < 1:
        raise HardnegError(f"refresh scope depth must be at least 1, got {depth}.")
    top = np.asarray(candidate_rows)[:, :depth].ravel()
    parts = [top[top != EMPTY].astype(np.int64), *(np.asarray(p, np.int64) for p in positives)]
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)


def fresh_query_pool(query_embeddings: np.ndarray, stale_documents: np.ndarray, positives: Sequence[np.ndarray],
                     depth: int) -> np.ndarray:
    """The corpus rows a pool-scope refresh re-encodes, found by the current model's queries in the last full
    mining's document embeddings (ANCE's stale index): each query's top ``depth`` there, plus every positive.

    Only the queries are encoded (a few hundred per refresh period), and the pool follows where the
    model now puts them, not where it put them at the last full mining: on debian-desc full, at the same
    pool size, it holds 0.908 / 0.898 of a full refresh's negatives at the first / third pool refresh
    against 0.870 / 0.864 for :func:`pool_scope` (``bench/RESULTS.md``, ANCE refresh scope).

    Args:
        query_embeddings: ``[n_queries, dim]`` the queries, embedded by the current model.
        stale_documents: ``[n_docs, dim]`` every document, as the last full mining embedded it (a memmap too).
        positives: per query, its positive corpus rows.
        depth: how many of each query's nearest documents join the pool.

    Returns:
        ``int64`` sorted unique rows.
    """
    from hardneg.retrieve.memory_plan import default_doc_shard
    from hardneg.retrieve.sharded_search import search_sharded

    if depth < 1:
        raise HardnegError(f"refresh scope depth must be at least 1, got {depth}.")
    nearest, _ = search_sharded(stale_documents, np.asarray(query_embeddings, np.float32), depth,
                                shard_size=default_doc_shard(*stale_documents.shape), show_progress=False)
    return pool_scope(nearest, positives, depth)


def scoped_data(data: RetrievalData, rows: np.ndarray, queries: np.ndarray | None = None) -> RetrievalData:
    """``data`` with its corpus cut to ``rows`` (sorted, unique, every kept query's positive among them) and,
    given ``queries`` (query rows), only those queries; the positives point into the cut corpus. Document
    row ``i`` of the result is row ``rows[i]`` of ``data``, query row ``j`` is ``queries[j]``."""
    rows = np.asarray(rows, np.int64)
    if queries is not None:
        data = data.subset(queries)
    corpus = data.corpus
    new_row = np.full(len(corpus), -1, np.int64)
    new_row[rows] = np.arange(len(rows))
    positives = tuple(new_row[np.asarray(p, np.int64)].astype(np.int32) for p in data.positives)
    if any((p < 0).any() for p in positives):
        raise HardnegError("refresh scope: a positive is outside the scope's documents; build the rows with "
                           "pool_scope(), which always includes the positives.")
    cut = Corpus(ids=[corpus.ids[r] for r in rows], titles=[corpus.titles[r] for r in rows],
                 texts=[corpus.texts[r] for r in rows])
    return RetrievalData(cut, data.queries, positives, data.grades, data.origin)


def to_corpus_rows(result, rows: np.ndarray, queries: np.ndarray | None = None):
    """A :class:`~hardneg.mine.MiningResult` mined on :func:`scoped_data` with its document rows
    (candidates, negatives, denoised candidates) mapped back to the full corpus' rows and, given the
    ``queries`` it was cut to, its selection's query rows mapped back to the full data's. (Candidate rows
    stay one per query mined, in the order of ``queries``.)"""
    rows = np.asarray(rows, np.int64)

    def lift(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        return np.where(a != EMPTY, rows[np.maximum(a, 0)], EMPTY).astype(a.dtype)

    candidates = replace(result.candidates, doc_ids=lift(result.candidates.doc_ids))
    query_rows = result.selection.query_rows
    if queries is not None:
        query_rows = np.asarray(queries, np.int64)[query_rows].astype(query_rows.dtype)
    selection = replace(result.selection, negatives=lift(result.selection.negatives),
                        denoised=lift(result.selection.denoised), query_rows=query_rows)
    return replace(result, candidates=candidates, selection=selection)
