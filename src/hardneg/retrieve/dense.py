"""Dense candidates: encode (cached, resumable), index, search."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.candidates import Candidates, positive_score_matrix
from hardneg.execute import Executor, ShardWork
from hardneg.retrieve.encoder import Encoder
from hardneg.retrieve.search import IndexConfig, build_index, search
from hardneg.store import RunDir, fingerprint, load_npy, sharded_compute, texts_fingerprint

logger = logging.getLogger(__name__)


class DenseRetriever:
    """Embedding-similarity candidates (cosine: embeddings are L2-normalised)."""

    name = "dense"

    def __init__(self, encoder: Encoder, index: IndexConfig | None = None, *, shard_size: int = 1024,
                 executor: Executor | None = None) -> None:
        self.encoder = encoder
        self.index = index or IndexConfig()
        self.shard_size = shard_size
        self.executor = executor  # who encodes the shards (hardneg.execute); None: this process

    def key(self) -> str:
        return fingerprint("dense", self.encoder.key(), self.index.to_dict())

    def dense_part(self) -> DenseRetriever:
        """Itself (:class:`~hardneg.retrieve.base.DenseBacked`)."""
        return self

    def with_dense_part(self, dense: DenseRetriever) -> DenseRetriever:
        """``dense`` in place of itself (:class:`~hardneg.retrieve.base.DenseBacked`)."""
        return dense

    def embed(self, data, *, run_dir: RunDir | None = None, show_progress: bool = True):
        """Query and document embeddings, from the run directory's cache when present."""
        docs = cached_encode(
            self._job(run_dir), data.corpus.passages, f"doc-{self.encoder.key()}",
            run_dir, self.shard_size, show_progress, "Encoding documents", side="documents", executor=self.executor,
        )
        queries = cached_encode(
            self._job(run_dir), data.queries.texts, f"query-{self.encoder.key()}",
            run_dir, self.shard_size, show_progress, "Encoding queries", side="queries", executor=self.executor,
        )
        return queries, docs

    def _job(self, run_dir: RunDir | None) -> EncodeJob:
        return EncodeJob(self.encoder, run_dir.model_snapshots if run_dir is not None else None)

    def cached_embeddings(self, data, run_dir: RunDir) -> tuple[np.ndarray, np.ndarray] | None:
        """The query and document embeddings :meth:`embed` saved in ``run_dir`` (memory-mapped); None where
        either is missing. Never encodes."""
        found = []
        for role, texts in ((f"query-{self.encoder.key()}", data.queries.texts),
                            (f"doc-{self.encoder.key()}", data.corpus.passages)):
            cached = load_npy(run_dir.embeddings(embedding_key(role, texts)), what="embeddings", mmap=True)
            if cached is None or cached.shape[0] != len(texts):
                return None
            found.append(cached)
        return found[0], found[1]

    def retrieve(self, data, depth: int, *, run_dir: RunDir | None = None, show_progress: bool = True) -> Candidates:
        queries, docs = self.embed(data, run_dir=run_dir, show_progress=show_progress)
        return self.search(data, queries, docs, depth, show_progress=show_progress)

    def search(self, data, queries: np.ndarray, docs: np.ndarray, depth: int, *, show_progress: bool = True) -> Candidates:
        """Candidates from embeddings already computed (``float32[n_queries, dim]``, ``[n_docs, dim]``)."""
        index = build_index(docs, self.index)
        doc_ids, scores = search(index, queries, depth, block_size=self.index.block_size, show_progress=show_progress)
        return Candidates.from_single(
            self.name, data.queries.ids, doc_ids, scores, positive_similarities(queries, docs, data.positives)
        )


def positive_similarities(queries: np.ndarray, docs: np.ndarray, positives: tuple[np.ndarray, ...]) -> np.ndarray:
    """NaN-padded ``float32[n, p]`` inner products of each query with its positives."""
    rows = np.repeat(np.arange(len(positives)), [len(p) for p in positives])
    cols = np.concatenate(positives) if positives else np.empty(0, np.int64)
    flat = np.einsum("ij,ij->i", queries[rows], docs[cols]) if len(cols) else np.empty(0, np.float32)
    return positive_score_matrix(positives, flat)


def embedding_key(role: str, texts: Sequence[str]) -> str:
    """The run-directory cache key of the embeddings of ``texts`` (``role`` carries the encoder fingerprint)."""
    return f"{role}-{texts_fingerprint(list(texts))}"


@dataclass(frozen=True)
class EncodeJob:
    """Encoding as a shard job (:class:`~hardneg.execute.ShardJob`): ``(side, texts)`` -> their embeddings.

    One job serves both sides (``documents``, ``queries``: which prompt applies), so a
    worker loads the model once for both.

    Attributes:
        encoder: an :class:`~hardneg.retrieve.encoder.Encoder`.
        snapshot_dir: where :meth:`portable` may save a model that exists only in memory.
    """

    encoder: Any
    snapshot_dir: Path | None = None

    def encode(self, side: str, texts: Sequence[str], *, show_progress: bool) -> np.ndarray:
        method = self.encoder.encode_documents if side == "documents" else self.encoder.encode_queries
        return method(texts, show_progress=show_progress)

    def load(self) -> Callable[[tuple[str, list[str]]], np.ndarray]:
        return lambda payload: self.encode(*payload, show_progress=False)

    def portable(self) -> EncodeJob:
        """This job with an encoder that holds its model by name or path (an encoder without
        ``portable()``, e.g. a test fake, travels as it is)."""
        portable = getattr(self.encoder, "portable", None)
        return self if portable is None else replace(self, encoder=portable(self.snapshot_dir))


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

    The cache key combines ``role`` (which carries the encoder fingerprint) with a hash
    of the texts, so other texts or another model never hit a stale file. The shards are
    computed by ``executor`` (default: this process); the shard plan and files do not
    depend on it.
    """
    texts = list(texts)
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
