"""Dense candidates: encode (cached, resumable), index, search."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.candidates import Candidates, positive_score_matrix
from hardneg.choices import EMBEDDING_DTYPES, EmbeddingDtype, check_choice
from hardneg.execute import Executor, ShardWork
from hardneg.retrieve.encoder import Encoder
from hardneg.retrieve.exact import exact_scores, order_by_score_then_id
from hardneg.retrieve.memory_plan import BlockPlan, block_plan, default_doc_shard
from hardneg.retrieve.search import IndexConfig, build_index, index_parameters, search
from hardneg.store import RunDir, fingerprint, load_npy, sharded_compute, texts_fingerprint

logger = logging.getLogger(__name__)


class DenseRetriever:
    """Embedding-similarity candidates (cosine: embeddings are L2-normalised).

    Args:
        encoder: the bi-encoder.
        index: the FAISS index; ``flat`` (default) is exact, searched over document shards.
        shard_size: texts per encoding shard (the resume granularity).
        embedding_dtype: how embeddings are stored (and memory-mapped when read for search):
            ``float16`` halves their memory and disk; scores are computed in float32 either way.
        memory_budget: bytes (beyond the model) that pick the block sizes
            (:func:`~hardneg.retrieve.memory_plan.block_plan`); None: 4,096-query blocks and shards of
            at most 512 MiB of float32 (:func:`~hardneg.retrieve.memory_plan.default_doc_shard`).
        search_shard_size: documents per exact-search shard, overriding the budget's.
        executor: who encodes the shards (:mod:`hardneg.execute`); None: this process.
    """

    name = "dense"

    def __init__(self, encoder: Encoder, index: IndexConfig | None = None, *, shard_size: int = 1024,
                 embedding_dtype: EmbeddingDtype = "float32", memory_budget: int | None = None,
                 search_shard_size: int | None = None, executor: Executor | None = None) -> None:
        check_choice("embedding dtype", embedding_dtype, EMBEDDING_DTYPES)
        self.encoder = encoder
        self.executor = executor
        self.index = index or IndexConfig()
        self.shard_size = shard_size
        self.embedding_dtype = embedding_dtype
        self.memory_budget = memory_budget
        self.search_shard_size = search_shard_size

    def key(self) -> str:
        return fingerprint("dense", self.encoder.key(), self.index.to_dict(), self.embedding_dtype)

    def dense_part(self) -> DenseRetriever:
        """Itself (:class:`~hardneg.retrieve.base.DenseBacked`)."""
        return self

    def with_dense_part(self, dense: DenseRetriever) -> DenseRetriever:
        """``dense`` in place of itself (:class:`~hardneg.retrieve.base.DenseBacked`)."""
        return dense

    def role(self, what: str) -> str:
        """Cache role of ``query`` or ``doc`` embeddings: encoder fingerprint, and the dtype unless float32."""
        suffix = "" if self.embedding_dtype == "float32" else f"-{self.embedding_dtype}"
        return f"{what}-{self.encoder.key()}{suffix}"

    def plan(self, n_docs: int, dim: int, depth: int = 100) -> BlockPlan:
        """Block sizes for a corpus of ``n_docs`` (from the memory budget, when there is one)."""
        if self.memory_budget is None:
            plan = BlockPlan(self.index.block_size, default_doc_shard(n_docs, dim), self.shard_size)
        else:
            itemsize = np.dtype(self.embedding_dtype).itemsize
            plan = block_plan(self.memory_budget, n_docs, dim, itemsize, depth)
        if self.search_shard_size is not None:
            plan = dataclasses.replace(plan, doc_shard=self.search_shard_size)
        return plan

    def embed(self, data, *, run_dir: RunDir | None = None, show_progress: bool = True):
        """Query and document embeddings, from the run directory's cache when present (memory-mapped)."""
        # the width is not known before encoding: plan the encoding shard for the widest common one
        shard = self.shard_size if self.memory_budget is None else self.plan(len(data.corpus), 1024).encode_shard
        job = EncodeJob(self.encoder, run_dir.model_snapshots if run_dir is not None else None, self.embedding_dtype)
        docs = cached_encode(job, data.corpus.passages, self.role("doc"), run_dir, shard, show_progress,
                             "Encoding documents", side="documents", executor=self.executor)
        queries = cached_encode(job, data.queries.texts, self.role("query"), run_dir, shard, show_progress,
                                "Encoding queries", side="queries", executor=self.executor)
        return queries, docs

    def cached_embeddings(self, data, run_dir: RunDir) -> tuple[np.ndarray, np.ndarray] | None:
        """The query and document embeddings :meth:`embed` saved in ``run_dir`` (memory-mapped); None where
        either is missing. Never encodes."""
        found = []
        for role, texts in ((self.role("query"), data.queries.texts), (self.role("doc"), data.corpus.passages)):
            cached = load_npy(run_dir.embeddings(embedding_key(role, texts)), what="embeddings", mmap=True)
            if cached is None or cached.shape[0] != len(texts):
                return None
            found.append(cached)
        return found[0], found[1]

    def retrieve(self, data, depth: int, *, run_dir: RunDir | None = None, show_progress: bool = True) -> Candidates:
        queries, docs = self.embed(data, run_dir=run_dir, show_progress=show_progress)
        return self.search(data, queries, docs, depth, show_progress=show_progress)

    def search(self, data, queries: np.ndarray, docs: np.ndarray, depth: int, *, show_progress: bool = True) -> Candidates:
        """Candidates from embeddings already computed (``[n_queries, dim]``, ``[n_docs, dim]``; a memmap too).

        Exact (``flat``) search runs over document shards; an approximate index's candidates
        (``refine_factor x depth`` of them) are scored again by the same fixed kernel and cut to
        the best ``depth``, and their recall against exact search,
        on a sample of queries, goes into ``search_quality``. Either way the scores are
        :func:`~hardneg.retrieve.exact.exact_scores`, whatever the shards.
        """
        from hardneg.retrieve.recall import measure_recall
        from hardneg.retrieve.sharded_search import search_sharded

        plan = self.plan(len(docs), docs.shape[1], depth)
        quality = {}
        if self.index.exact:
            doc_ids, scores = search_sharded(docs, queries, depth, shard_size=plan.doc_shard,
                                             block_size=plan.query_block, show_progress=show_progress)
        else:
            found, _ = search(build_index(docs, self.index), queries, depth * self.index.refine_factor,
                              block_size=plan.query_block, show_progress=show_progress)
            doc_ids, scores = order_by_score_then_id(found, exact_scores(queries, docs, found))
            doc_ids, scores = doc_ids[:, :depth], scores[:, :depth]  # the best of the refined candidates
            quality = measure_recall(self.index.kind, docs, queries, doc_ids, sample=self.index.recall_queries,
                                     shard_size=plan.doc_shard, block_size=plan.query_block,
                                     parameters=index_parameters(self.index, *docs.shape))
            logger.info("%s recall@%d against exact search: %.4f (%d sampled queries)", self.index.kind, depth,
                        quality["recall_vs_exact"], quality["queries"])
        return Candidates.from_single(
            self.name, data.queries.ids, doc_ids, scores, positive_similarities(queries, docs, data.positives),
            search_quality=quality,
        )


def positive_similarities(queries: np.ndarray, docs: np.ndarray, positives: tuple[np.ndarray, ...]) -> np.ndarray:
    """NaN-padded ``float32[n, p]`` inner products of each query with its positives (the fixed kernel's)."""
    width = max((len(p) for p in positives), default=0)
    ids = np.full((len(positives), max(width, 1)), -1, dtype=np.int64)
    for row, pos in enumerate(positives):
        ids[row, : len(pos)] = pos
    scores = exact_scores(queries, docs, ids)
    flat = np.concatenate([scores[row, : len(pos)] for row, pos in enumerate(positives)]) if positives else scores
    return positive_score_matrix(positives, flat.astype(np.float32))


def embedding_key(role: str, texts: Sequence[str]) -> str:
    """The run-directory cache key of the embeddings of ``texts`` (``role`` carries the encoder fingerprint)."""
    return f"{role}-{texts_fingerprint(texts)}"


@dataclass(frozen=True)
class EncodeJob:
    """Encoding as a shard job (:class:`~hardneg.execute.ShardJob`): ``(side, texts)`` -> their embeddings.

    One job serves both sides (``documents``, ``queries``: which prompt applies), so a
    worker loads the model once for both.

    Attributes:
        encoder: an :class:`~hardneg.retrieve.encoder.Encoder`.
        snapshot_dir: where :meth:`portable` may save a model that exists only in memory.
        dtype: how the embeddings are stored (``float32``, ``float16``).
    """

    encoder: Any
    snapshot_dir: Path | None = None
    dtype: str = "float32"

    def encode(self, side: str, texts: Sequence[str], *, show_progress: bool) -> np.ndarray:
        method = self.encoder.encode_documents if side == "documents" else self.encoder.encode_queries
        return method(texts, show_progress=show_progress).astype(self.dtype, copy=False)

    def load(self) -> Callable[[tuple[str, list[str]]], np.ndarray]:
        return lambda payload: self.encode(*payload, show_progress=False)

    def portable(self) -> EncodeJob:
        """This job with an encoder that holds its model by name or path (an encoder without
        ``portable()``, e.g. a test fake, travels as it is)."""
        portable = getattr(self.encoder, "portable", None)
        return self if portable is None else replace(self, encoder=portable(self.snapshot_dir))

    def model_dir(self) -> Path | None:
        """The local folder the encoder loads its model from (None: a hub name, or an encoder without one)."""
        local = getattr(self.encoder, "local_model_dir", None)
        return local() if local is not None else None

    def loading_from(self, folder: str | Path) -> EncodeJob:
        """This job with its encoder loading the same model from ``folder`` (a copy of :meth:`model_dir`)."""
        return replace(self, encoder=self.encoder.loading_from(folder))


def cached_encode(
    job: EncodeJob,
    texts: Sequence[str],
    role: str,
    run_dir: RunDir | None,
    shard_size: int,
    show_progress: bool,
    desc: str,
    *,
    side: str = "documents",
    executor: Executor | None = None,
) -> np.ndarray:
    """Encode ``texts`` in shards saved to the run directory; resume after a kill.

    The cache key combines ``role`` (which carries the encoder fingerprint and the
    stored dtype) with a hash of the texts, so other texts or another model never hit a
    stale file. The shards are computed by ``executor`` (default: this process); the
    shard plan and files do not depend on it. From a run directory the embeddings come
    back memory-mapped.
    """
    if not isinstance(texts, Sequence):
        texts = list(texts)  # a sequence (a corpus's TextColumn) stays as it is: no Python string per text held
    if run_dir is None and (executor is None or executor.name == "embedded"):
        return job.encode(side, texts, show_progress=show_progress)
    final = parts_dir = None
    if run_dir is not None:
        key = embedding_key(role, texts)
        final, parts_dir = run_dir.embeddings(key), run_dir.embedding_parts(key)
        cached = load_npy(final, what="embeddings", mmap=True)
        if cached is not None and cached.shape[0] == len(texts):
            logger.info("%s: reusing cached embeddings %s", desc, final.name)
            return cached
    # Shard in length order so each forward pass pads little; results come back in input order.
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return sharded_compute(
        ShardWork(job, lambda idx: (side, [texts[i] for i in idx])),
        order,
        shard_size=shard_size,
        parts_dir=parts_dir,
        final=final,
        desc=desc,
        unit="text",
        show_progress=show_progress,
        executor=executor,
    )
