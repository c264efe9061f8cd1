"""How much of exact search an approximate index finds: recall@depth on a sample of queries."""

from __future__ import annotations

from typing import Any

import numpy as np

from hardneg.candidates import EMPTY


def recall_against_exact(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of ``|approximate ∩ exact| / |exact|`` (``EMPTY`` slots ignored; NaN without queries).

    Args:
        approx_ids: ``int[n, k]`` the approximate index's rows per query.
        exact_ids: ``int[n, k]`` exact search's rows for the same queries.
    """
    shares = []
    for approx, exact in zip(approx_ids.tolist(), exact_ids.tolist()):
        truth = {d for d in exact if d != EMPTY}
        if truth:
            shares.append(len(truth & {d for d in approx if d != EMPTY}) / len(truth))
    return float(np.mean(shares)) if shares else float("nan")


def sample_queries(n_queries: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted query rows to measure recall on: ``size`` of them (all when fewer), the same every run."""
    if size >= n_queries:
        return np.arange(n_queries)
    return np.sort(np.random.default_rng(seed).choice(n_queries, size, replace=False))


def measure_recall(
    kind: str, doc_embeddings: np.ndarray, query_embeddings: np.ndarray, approx_ids: np.ndarray, *,
    sample: int, shard_size: int, block_size: int, parameters: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The mining report's ``search_quality``: recall@depth of ``approx_ids`` against exact flat search,
    on ``sample`` seeded queries, with the index's ``parameters`` (``nlist``, ``nprobe``, ...) that
    found them."""
    from hardneg.retrieve.sharded_search import search_sharded

    rows = sample_queries(len(query_embeddings), sample)
    depth = approx_ids.shape[1]
    exact_ids, _ = search_sharded(doc_embeddings, np.asarray(query_embeddings[rows], np.float32), depth,
                                  shard_size=shard_size, block_size=block_size, show_progress=False)
    recall = recall_against_exact(approx_ids[rows], exact_ids)
    return {"index": kind, "parameters": dict(parameters or {}), "depth": depth, "queries": len(rows),
            "recall_vs_exact": round(recall, 6)}
