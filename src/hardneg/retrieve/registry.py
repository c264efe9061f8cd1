"""The retriever kinds, one builder each: ``bm25``, ``dense``, ``hybrid``.

Adding a retriever is a class with ``key()`` and ``retrieve()`` (the
:class:`~hardneg.retrieve.base.Retriever` protocol; also
:class:`~hardneg.retrieve.base.DenseBacked` when its candidates depend on an embedding
model), a builder here, and its name in :data:`hardneg.choices.RETRIEVERS`.
Heavy modules (FAISS, torch) are imported only by the builders that need them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hardneg.choices import EMBEDDING_DTYPES, FUSIONS, RETRIEVERS, EmbeddingDtype, Fusion, check_choice
from hardneg.errors import HardnegError
from hardneg.retrieve.base import Retriever
from hardneg.retrieve.bm25 import BM25Config, BM25Retriever
from hardneg.retrieve.search import IndexConfig


@dataclass(frozen=True)
class RetrieverSpec:
    """What a retriever is built from.

    Attributes:
        kind: one of :data:`hardneg.choices.RETRIEVERS`.
        bm25: BM25 settings (``bm25``, ``hybrid``).
        encoder: the bi-encoder (``dense``, ``hybrid``); an
            :class:`~hardneg.retrieve.encoder.Encoder`.
        index: the FAISS index (``dense``, ``hybrid``).
        fusion: how ``hybrid`` fuses its two lists.
        executor: who encodes (``dense``, ``hybrid``; :mod:`hardneg.execute`); None: this process.
        embedding_dtype: how dense embeddings are stored (``float16``, ``float32``).
        memory_budget: bytes that pick dense block sizes; None for the defaults.
    """

    kind: str
    bm25: BM25Config = field(default_factory=BM25Config)
    encoder: Any = None
    index: IndexConfig = field(default_factory=IndexConfig)
    fusion: Fusion = "rrf"
    executor: Any = None
    embedding_dtype: EmbeddingDtype = "float32"
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        check_choice("retriever", self.kind, RETRIEVERS)
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("embedding dtype", self.embedding_dtype, EMBEDDING_DTYPES)


def _bm25(spec: RetrieverSpec) -> Retriever:
    return BM25Retriever(spec.bm25)


def _dense(spec: RetrieverSpec) -> Retriever:
    from hardneg.retrieve.dense import DenseRetriever

    if spec.encoder is None:
        raise HardnegError(
            f"--retriever {spec.kind} needs --model: a sentence-transformers name "
            "(e.g. sentence-transformers/all-MiniLM-L6-v2) or a local model directory."
        )
    return DenseRetriever(spec.encoder, spec.index, embedding_dtype=spec.embedding_dtype,
                          memory_budget=spec.memory_budget, executor=spec.executor)


def _hybrid(spec: RetrieverSpec) -> Retriever:
    from hardneg.retrieve.hybrid import HybridRetriever

    return HybridRetriever(BM25Retriever(spec.bm25), _dense(spec), fusion=spec.fusion)


BUILDERS: dict[str, Callable[[RetrieverSpec], Retriever]] = {"bm25": _bm25, "dense": _dense, "hybrid": _hybrid}


def build_retriever(spec: RetrieverSpec) -> Retriever:
    """The retriever ``spec`` describes."""
    return BUILDERS[spec.kind](spec)
