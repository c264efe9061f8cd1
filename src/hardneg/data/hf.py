"""Hugging Face datasets of (query, positive) rows; ``datasets`` itself is never imported."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hardneg.data.pairs import PairsBuilder, missing_columns_error
from hardneg.data.readers import CorpusRead, json_type
from hardneg.data.values import Corpus, DataSource, RetrievalData
from hardneg.errors import HardnegError


def from_hf_dataset(
    dataset: Any,
    *,
    query_column: str = "query",
    positive_column: str = "positive",
    corpus: Sequence[str] | None = None,
) -> RetrievalData:
    """Convert a Hugging Face ``datasets.Dataset`` of (query, positive) rows.

    Same semantics as :func:`load_pairs`; ``datasets`` itself is never imported
    (anything with ``column_names`` and ``dataset[column]`` works).

    Args:
        dataset: one split of a dataset, e.g. ``load_dataset(...)["train"]``.
        query_column: column holding the query text.
        positive_column: column holding the positive text(s).
        corpus: optional passages to mine negatives from; passage ``i`` gets id ``d{i}``.

    Returns:
        The loaded data.

    Raises:
        HardnegError: a column is missing, a whole ``DatasetDict`` was passed, or a row
            is malformed (the message names the 0-based row).
    """
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, dict):
        raise HardnegError(
            f"from_hf_dataset: got a dataset with splits {sorted(columns)}; expected one split. "
            "Pass e.g. dataset['train']."
        )
    if columns is None:
        raise HardnegError(
            f"from_hf_dataset: expected a datasets.Dataset (with .column_names), got {type(dataset).__name__}."
        )
    columns = list(columns)
    if query_column not in columns or positive_column not in columns:
        raise missing_columns_error("from_hf_dataset", (query_column, positive_column), columns, "the dataset")
    corpus_read = _given_passages(corpus) if corpus is not None else None
    builder = PairsBuilder(corpus_read, "(given passages)")
    queries = dataset[query_column]
    positives = dataset[positive_column]
    for index, (query, positive) in enumerate(zip(queries, positives)):
        builder.add(
            query, positive, lambda n=index: f"dataset row {n} (0-based)", query_column, positive_column
        )
    source = DataSource("hf", query_column=query_column, positive_column=positive_column, rows=len(dataset),
                        has_corpus=corpus is not None)
    return builder.build(source, "the dataset")


def _given_passages(corpus: Sequence[str]) -> CorpusRead:
    """Passage ``i`` becomes document ``d{i}``; empty passages are set aside for the warning."""
    if isinstance(corpus, (str, Path)):
        raise HardnegError(
            "from_hf_dataset: corpus must be a sequence of passage strings; "
            "for a corpus file use load_pairs or read it into a list first."
        )
    ids: list[str] = []
    texts: list[str] = []
    empty: dict[str, int] = {}
    for index, passage in enumerate(corpus):
        if not isinstance(passage, str):
            raise HardnegError(
                f"from_hf_dataset: corpus[{index}] must be a string, got {json_type(passage)} {passage!r}."
            )
        if not passage.strip():
            empty[f"d{index}"] = index + 1
            continue
        ids.append(f"d{index}")
        texts.append(passage)
    return CorpusRead(Corpus(tuple(ids), ("",) * len(ids), tuple(texts)), empty, Path("corpus"))
