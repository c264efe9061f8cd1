"""The retriever protocols: anything that turns data into candidates, and those with a dense part."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hardneg.candidates import Candidates
    from hardneg.data import RetrievalData
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.store import RunDir


class Retriever(Protocol):
    """Returns, per query, its top-``depth`` corpus documents with scores.

    ``key()`` identifies everything that determines the output apart from the data
    (model weights, prompts, tokenizer settings), so cached candidates are reused only
    when it is unchanged.
    """

    name: str

    def key(self) -> str: ...

    def retrieve(
        self, data: RetrievalData, depth: int, *, run_dir: RunDir | None = None, show_progress: bool = True
    ) -> Candidates: ...


@runtime_checkable
class DenseBacked(Protocol):
    """A retriever whose candidates depend on an embedding model: dense itself, or hybrid.

    An ANCE refresh re-encodes with the model being trained, so it needs the dense part
    (to forget its fingerprint and to evaluate with it) and a copy of the retriever with
    that part replaced (an asynchronous refresh mines from a weight snapshot).
    """

    def dense_part(self) -> DenseRetriever: ...

    def with_dense_part(self, dense: DenseRetriever) -> Retriever: ...
