"""Top-k inner-product search over embeddings with FAISS, in query blocks.

Memory grows with ``corpus x dim`` (the index) plus ``block x k`` (one block's
results), never with ``queries x corpus``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from hardneg.candidates import EMPTY
from hardneg.choices import INDEX_KINDS, IndexKind, check_choice
from hardneg.errors import HardnegError
from hardneg.retrieve.exact import exact_top_k, order_by_score_then_id

logger = logging.getLogger(__name__)

__all__ = ["IndexConfig", "build_index", "order_by_score_then_id", "require_faiss", "search"]


@dataclass(frozen=True)
class IndexConfig:
    """Which FAISS index to search.

    Attributes:
        kind: ``flat`` (exact), ``hnsw`` (graph, approximate) or ``ivf`` (inverted
            lists, approximate).
        hnsw_m: HNSW links per node.
        ef_construction, ef_search: HNSW build and search breadth (higher: more exact).
        nlist: IVF cells; default ``4 * sqrt(n_docs)`` (at most ``n_docs / 39``).
        nprobe: IVF cells visited per query.
        block_size: queries searched per block.
    """

    kind: IndexKind = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 256
    nlist: int | None = None
    nprobe: int = 32
    block_size: int = 4096

    def __post_init__(self) -> None:
        check_choice("index kind", self.kind, INDEX_KINDS)

    def to_dict(self) -> dict:
        return asdict(self)


def require_faiss():
    # FAISS's loader logs at INFO each SIMD build it tries (AVX512-SPR, AVX512, AVX2): noise on every dense run
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        import faiss
    except ImportError as exc:
        raise HardnegError("Dense search needs FAISS: pip install faiss-cpu (or 'hardneg[dense]').") from exc
    return faiss


def build_index(doc_embeddings: np.ndarray, config: IndexConfig):
    """Build a FAISS inner-product index over ``float32[n_docs, dim]`` embeddings."""
    faiss = require_faiss()
    emb = np.ascontiguousarray(doc_embeddings, dtype=np.float32)
    n, dim = emb.shape
    if config.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
    else:
        # FAISS wants >= 39 training points per cell
        nlist = config.nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
        if nlist > n:
            raise HardnegError(f"IVF needs nlist <= n_docs; got nlist={nlist} for {n} documents. Lower --nlist.")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(emb)
        index.nprobe = min(config.nprobe, nlist)
    index.add(emb)
    return index


def search(
    index, query_embeddings: np.ndarray, k: int, *, block_size: int = 4096, show_progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` documents per query, best first.

    A flat index gives the exact top-k by (score descending, row ascending), scored by
    :func:`~hardneg.retrieve.exact.exact_scores` (:func:`~hardneg.retrieve.exact.exact_top_k`);
    an approximate one gives what it finds, re-sorted the same way.

    Returns:
        ``int32[n_queries, k]`` document rows (``-1`` where the index found fewer) and
        ``float32[n_queries, k]`` inner products (NaN in those slots).
    """
    faiss = require_faiss()
    if isinstance(index, faiss.IndexFlat):
        docs = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
        return exact_top_k(index, docs, query_embeddings, k, block_size=block_size, show_progress=show_progress)
    n = len(query_embeddings)
    k_eff = min(k, index.ntotal)
    ids = np.full((n, k), EMPTY, dtype=np.int32)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    bar = tqdm(total=n, desc="Searching", unit="q", disable=not show_progress)
    for start in range(0, n, block_size):
        block = np.ascontiguousarray(query_embeddings[start : start + block_size], dtype=np.float32)
        block_scores, block_ids = index.search(block, k_eff)  # (block, k_eff)
        block_ids, block_scores = order_by_score_then_id(block_ids, block_scores)
        found = block_ids >= 0
        ids[start : start + len(block), :k_eff] = np.where(found, block_ids, EMPTY)
        scores[start : start + len(block), :k_eff] = np.where(found, block_scores, np.nan)
        bar.update(len(block))
    bar.close()
    return ids, scores

