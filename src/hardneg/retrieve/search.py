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

PQ_WELL_TRAINED = 39 * 256  # FAISS's least training points for 256 centroids per sub-quantiser
NLIST_CAP = 4096  # default IVF cells stop growing here (4 sqrt(N) reaches it at 1,048,576 documents)

__all__ = ["IndexConfig", "build_index", "order_by_score_then_id", "require_faiss", "search"]


@dataclass(frozen=True)
class IndexConfig:
    """Which FAISS index to search.

    Attributes:
        kind: ``flat`` (exact), ``hnsw`` (graph), ``ivf`` (inverted lists), ``ivf-pq``
            (inverted lists of product-quantised vectors: ``pq_m`` bytes a document) or
            ``ivf-sq8`` (inverted lists of 8-bit scalar-quantised vectors: ``dim`` bytes a
            document); all but ``flat`` are approximate, and the mining report says their
            recall against exact search.
        hnsw_m: HNSW links per node.
        ef_construction, ef_search: HNSW build and search breadth (higher: more exact).
        nlist: IVF cells; default :func:`default_nlist` (``4 * sqrt(n_docs)``, at most 4,096
            and ``n_docs / 39``).
        nprobe: IVF cells visited per query.
        pq_m: ``ivf-pq`` sub-quantisers (bytes per document; must divide the embedding
            width); default ``dim / 8`` rounded down to a divisor.
        train_sample: documents the IVF kinds train on; default ``max(39 * nlist, 50,000)``,
            at most all of them (a seeded sample, so the index is the same every run).
        refine_factor: an approximate index is asked for ``refine_factor x depth`` candidates a
            query, which are rescored exactly and cut to the best ``depth``: compressed codes
            misorder close documents, and the exact scores put them right (``ivf-pq`` on
            debian-desc: recall@100 0.74 at 1, 0.86 at 2, 0.87 at 4, for 3 % more CPU at 2).
        recall_queries: queries sampled to measure an approximate index's recall against exact.
        block_size: queries searched per block.
    """

    kind: IndexKind = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 256
    nlist: int | None = None
    nprobe: int = 32
    pq_m: int | None = None
    train_sample: int | None = None
    refine_factor: int = 2
    recall_queries: int = 1000
    block_size: int = 4096

    def __post_init__(self) -> None:
        check_choice("index kind", self.kind, INDEX_KINDS)
        for name in ("hnsw_m", "ef_construction", "ef_search", "nlist", "nprobe", "pq_m", "train_sample",
                     "refine_factor", "recall_queries", "block_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise HardnegError(f"index {name} must be at least 1; got {value}.")

    @property
    def exact(self) -> bool:
        return self.kind == "flat"

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


_ADD_ROWS = 65536  # documents converted to float32 and added at a time (a memmap is read piecewise)


def build_index(doc_embeddings: np.ndarray, config: IndexConfig):
    """A FAISS inner-product index over ``[n_docs, dim]`` embeddings (float16 or float32; a memmap too)."""
    faiss = require_faiss()
    n, dim = doc_embeddings.shape
    if config.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif config.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
    else:
        index = ivf_index(faiss, doc_embeddings, config)
    in_memory = type(doc_embeddings) is np.ndarray and doc_embeddings.dtype == np.float32
    if in_memory and doc_embeddings.flags.c_contiguous:  # one add: FAISS sizes its storage once
        index.add(doc_embeddings)
        return index
    for start in range(0, n, _ADD_ROWS):
        index.add(np.ascontiguousarray(doc_embeddings[start : start + _ADD_ROWS], dtype=np.float32))
    return index


def ivf_index(faiss, doc_embeddings: np.ndarray, config: IndexConfig):
    """An empty, trained IVF index of ``config.kind`` (``ivf``, ``ivf-pq``, ``ivf-sq8``), on a GPU where FAISS has one."""
    n, dim = doc_embeddings.shape
    resolved = index_parameters(config, n, dim)  # what the mining report records is what is built here
    nlist = resolved["nlist"]
    if nlist > n:
        raise HardnegError(f"IVF needs nlist <= n_docs; got nlist={nlist} for {n} documents. Lower --nlist.")
    quantizer = faiss.IndexFlatIP(dim)
    if config.kind == "ivf":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    elif config.kind == "ivf-sq8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
    else:
        m = resolved["pq_m"]
        if dim % m:
            raise HardnegError(f"--pq-m must divide the embedding width {dim}; got {m}. Try {default_pq_m(dim)}.")
        if n < 256:
            raise HardnegError(f"ivf-pq trains 256 centroids per sub-quantiser and needs at least 256 documents; "
                               f"got {n}. Use --index flat (exact) for a corpus this small.")
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = resolved["nprobe"]
    rows = training_rows(n, nlist, config.train_sample)
    if config.kind == "ivf-pq" and len(rows) < PQ_WELL_TRAINED:
        # FAISS would print its own warning once per sub-quantiser (48 lines at 384 wide): say it once, here
        index.pq.cp.min_points_per_centroid = 1
        logger.warning("ivf-pq trains 256 codes per sub-quantiser from %d documents (FAISS wants %d): its codes will be "
                       "coarse. For a corpus this small, --index flat (exact, the default) is fast enough.",
                       len(rows), PQ_WELL_TRAINED)
    index = on_gpu_if_present(faiss, index)
    index.train(np.ascontiguousarray(doc_embeddings[rows], dtype=np.float32))
    return index


def index_parameters(config: IndexConfig, n_docs: int, dim: int) -> dict[str, int]:
    """What an approximate index of ``config.kind`` runs with on ``n_docs`` x ``dim`` embeddings, every
    default resolved: :func:`ivf_index` builds from it, and the mining report records it beside the recall
    it bought, so a user can tell which setting to change (empty for ``flat``, which has none)."""
    if config.exact:
        return {}
    if config.kind == "hnsw":
        found = {"hnsw_m": config.hnsw_m, "ef_construction": config.ef_construction, "ef_search": config.ef_search}
    else:
        nlist = config.nlist or default_nlist(n_docs)
        found = {"nlist": nlist, "nprobe": min(config.nprobe, nlist),
                 "train_sample": training_size(n_docs, nlist, config.train_sample)}
        if config.kind == "ivf-pq":
            found["pq_m"] = config.pq_m or default_pq_m(dim)
    return {**found, "refine_factor": config.refine_factor}


def default_nlist(n_docs: int) -> int:
    """IVF cells for ``n_docs`` documents: ``4 sqrt(n_docs)``, at most ``n_docs / 39`` and :data:`NLIST_CAP`.

    FAISS wants at least 39 training documents a cell. Past 4,096 cells (about 1 M documents)
    the count stays fixed: adding a document assigns it to its nearest cell, so ``4 sqrt(N)``
    cells make building the index N^1.5 work (1.24 measured from 1 M to 8.8 M documents), and
    fixed cells keep it linear. Each query then scans a fixed share of the corpus
    (``nprobe / nlist``), so search grows linearly too. On 4 M documents (bench/ivf_nlist.py)
    the cap built ``ivf-pq`` in 0.45x the CPU seconds, for 1.4x the search and rescoring and
    0.013 less recall@100 at ``refine_factor`` 2 (0.911 against 0.925).
    """
    return max(1, min(int(4 * np.sqrt(n_docs)), n_docs // 39, NLIST_CAP))


def default_pq_m(dim: int) -> int:
    """``ivf-pq``'s default sub-quantisers: the largest divisor of ``dim`` up to ``dim / 8`` (48 for 384).

    Eight dimensions a sub-quantiser: FAISS trained 4-dimension ones (``dim / 4``) 18x slower
    here (54 s against 3 s of CPU for 20 k documents of 384), for 2x the bytes.
    """
    return max(m for m in range(1, max(1, dim // 8) + 1) if dim % m == 0)


def training_size(n_docs: int, nlist: int, sample: int | None) -> int:
    """Documents an IVF index trains on: ``sample``, default ``max(39 * nlist, 50,000)``, at most all."""
    return min(n_docs, sample if sample is not None else max(39 * nlist, 50_000))


def training_rows(n_docs: int, nlist: int, sample: int | None, seed: int = 0) -> np.ndarray:
    """Sorted rows an IVF index trains on: :func:`training_size` of them, a seeded sample."""
    size = training_size(n_docs, nlist, sample)
    if size >= n_docs:
        return np.arange(n_docs)
    return np.sort(np.random.default_rng(seed).choice(n_docs, size, replace=False))


def on_gpu_if_present(faiss, index):
    """``index`` on every GPU FAISS sees (faiss-gpu), else itself.

    Not tested: no machine the tests run on has a GPU. Kept to this one call so that
    nothing else differs between the CPU and GPU paths.
    """
    if getattr(faiss, "get_num_gpus", lambda: 0)() < 1:
        return index
    logger.info("FAISS sees %d GPU(s): the index is built and searched there", faiss.get_num_gpus())
    return faiss.index_cpu_to_all_gpus(index)


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

