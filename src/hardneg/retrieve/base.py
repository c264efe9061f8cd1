"""The Retriever protocol: anything that turns data into candidates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hardneg.candidates import Candidates
    from hardneg.data import RetrievalData
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
