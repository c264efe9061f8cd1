"""Retrieval data values: the corpus, the queries, their positives, and where they came from.

Inside the toolkit queries and documents are row indices; texts are looked up only at
the edges. :class:`DataSource` records where data was loaded from as fields (kind,
path, split, corpus, columns), so a run directory can reload it without parsing text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hardneg.data.text_column import TextColumn, as_text_column
from hardneg.errors import HardnegError
from hardneg.text import text_keys

_FINGERPRINT_VERSION = b"hardneg.data.fingerprint.v1\0"

SourceKind = Literal["beir", "pairs", "hf", "given"]


@dataclass(frozen=True)
class DataSource:
    """Where a :class:`RetrievalData` came from, as fields.

    Attributes:
        kind: ``beir`` (a BEIR folder), ``pairs`` (a pairs file), ``hf`` (a Hugging Face
            dataset) or ``given`` (built in code).
        path: the folder or file (``beir``/``pairs``); ``""`` otherwise.
        split: the qrels split of a BEIR folder.
        corpus: the separate corpus file of a pairs file, if any.
        query_column: the query column of a pairs file or dataset.
        positive_column: the positive column of a pairs file or dataset.
        rows: rows of a Hugging Face dataset.
        has_corpus: a Hugging Face dataset came with its own passages.
        subset: ``(kept, of)`` when only some of the queries were kept.
    """

    kind: SourceKind = "given"
    path: str = ""
    split: str = ""
    corpus: str = ""
    query_column: str = "query"
    positive_column: str = "positive"
    rows: int = 0
    has_corpus: bool = False
    subset: tuple[int, int] | None = None

    def describe(self) -> str:
        """The source in words, e.g. ``BEIR folder data/x (split train)``."""
        if self.kind == "beir":
            text = f"BEIR folder {self.path} (split {self.split})"
        elif self.kind == "pairs":
            text = f"pairs file {self.path}" + (f" with corpus {self.corpus}" if self.corpus else "")
        elif self.kind == "hf":
            text = f"Hugging Face dataset ({self.rows} rows)" + (" with given corpus" if self.has_corpus else "")
        else:
            text = "data given in code"
        if self.subset is not None:
            text += f" (subset: {self.subset[0]} of {self.subset[1]} queries)"
        return text

    @property
    def reloadable(self) -> bool:
        """True when :func:`hardneg.data.load` can read it again from disk (a BEIR folder or a pairs file)."""
        return self.kind in ("beir", "pairs") and bool(self.path)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (for a run's records)."""
        out = asdict(self)
        out["subset"] = list(self.subset) if self.subset is not None else None
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> DataSource:
        """The record :meth:`to_dict` wrote; unknown keys are refused."""
        try:
            subset = record.get("subset")
            return cls(**{**record, "subset": tuple(subset) if subset is not None else None})
        except TypeError as exc:
            raise HardnegError(f"Not a data-source record ({exc}): {record!r}") from None

    def of_subset(self, kept: int, of: int) -> DataSource:
        """This source, cut to ``kept`` of its ``of`` queries (a subset of a subset counts from the original)."""
        total = self.subset[1] if self.subset is not None else of
        return replace(self, subset=(kept, total))



@dataclass(frozen=True)
class Corpus:
    """The documents, in row order.

    Each field is a :class:`~hardneg.data.text_column.TextColumn` (any sequence of ``str`` given is
    converted): the texts are one UTF-8 buffer with row offsets, not one Python object each, and
    :meth:`save` / :meth:`open` keep them in a memory-mapped Arrow file.

    Attributes:
        ids: document id of each row, unique.
        titles: title of each row; ``""`` when the source has none.
        texts: body text of each row.
    """

    ids: TextColumn
    titles: TextColumn
    texts: TextColumn

    def __post_init__(self) -> None:
        for name in ("ids", "titles", "texts"):
            object.__setattr__(self, name, as_text_column(getattr(self, name), f"Corpus {name}"))
        if not len(self.ids) == len(self.titles) == len(self.texts):
            raise HardnegError(
                f"Corpus: {len(self.ids)} ids, {len(self.titles)} titles and {len(self.texts)} texts; "
                "expected one of each per document (use '' for a missing title)."
            )
        if _distinct(self.ids) != len(self.ids):
            duplicate = _first_duplicate(self.ids)
            raise HardnegError(f"Corpus: document id {duplicate!r} occurs more than once; ids must be unique.")

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Map from document id to row."""
        return {doc_id: row for row, doc_id in enumerate(self.ids)}

    def rows_of(self, doc_ids: Sequence[str]) -> np.ndarray:
        """The row of each id in ``doc_ids`` (``int64``; -1 where the corpus has no such id).

        Looked up by Arrow over the id column's bytes, so a big corpus needs no Python dict of its ids
        (:attr:`row_of` builds one, for lookups one id at a time).
        """
        return self.ids.rows_of(doc_ids)

    @cached_property
    def passages(self) -> TextColumn:
        """The text encoders, BM25 and exports see: ``"{title} {text}"``, or the text alone when there is no title.

        With no title anywhere (MS MARCO, plain-text corpora) this is :attr:`texts` itself, not a copy.
        """
        if self.titles.all_empty():
            return self.texts
        return TextColumn.from_texts(_passage(title, text) for title, text in zip(self.titles, self.texts))

    @cached_property
    def passage_keys(self) -> np.ndarray:
        """``int64[n]``: the normalised-text key of each passage (:func:`hardneg.text.text_keys`), computed once.

        Selection reads it to tell duplicate texts apart; a refresh selects again over the same corpus.
        """
        return text_keys(self.passages)

    @cached_property
    def digest(self) -> str:
        """A sha256 hex digest of the ids, titles and texts (their bytes, not their objects: fast)."""
        digest = hashlib.sha256(b"hardneg.corpus.v1\0")
        for name in _COLUMNS:
            getattr(self, name).update_digest(digest)
        return digest.hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write the corpus to ``path`` (a folder: ``ids.arrow``, ``titles.arrow``, ``texts.arrow``).

        :meth:`open` reads it back memory-mapped, so its texts stay on disk until they are read.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        for name in _COLUMNS:
            getattr(self, name).save(folder / f"{name}.arrow")
        return folder

    @classmethod
    def open(cls, path: str | Path) -> Corpus:
        """The corpus :meth:`save` wrote to ``path``, memory-mapped.

        Raises:
            HardnegError: a column file is missing or not a saved text column.
        """
        folder = Path(path)
        return cls(*(TextColumn.open(folder / f"{name}.arrow") for name in _COLUMNS))


_COLUMNS = ("ids", "titles", "texts")


@dataclass(frozen=True)
class Queries:
    """The queries, in row order.

    Attributes:
        ids: query id of each row, unique.
        texts: query text of each row.
    """

    ids: tuple[str, ...]
    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ids", tuple(self.ids))
        object.__setattr__(self, "texts", tuple(self.texts))
        if len(self.ids) != len(self.texts):
            raise HardnegError(
                f"Queries: {len(self.ids)} ids and {len(self.texts)} texts; expected one text per query id."
            )
        if _distinct(self.ids) != len(self.ids):
            duplicate = _first_duplicate(self.ids)
            raise HardnegError(f"Queries: query id {duplicate!r} occurs more than once; ids must be unique.")

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class RetrievalData:
    """A corpus, the queries to mine for, and each query's positives.

    Equality is identity (the fields hold arrays); compare :meth:`fingerprint` instead.

    Attributes:
        corpus: all documents (positives and everything negatives are drawn from).
        queries: queries with at least one positive, in the order they first appear in
            the qrels or pairs.
        positives: per query, the sorted unique ``int32`` corpus rows with relevance > 0.
        grades: per query, the ``int32`` relevance grades aligned with ``positives``.
        origin: where the data came from, as fields (see :class:`DataSource`).
    """

    corpus: Corpus
    queries: Queries
    positives: tuple[np.ndarray, ...]
    grades: tuple[np.ndarray, ...]
    origin: DataSource = DataSource()

    def __post_init__(self) -> None:
        object.__setattr__(self, "positives", tuple(self.positives))
        object.__setattr__(self, "grades", tuple(self.grades))
        n = len(self.queries)
        if len(self.positives) != n or len(self.grades) != n:
            raise HardnegError(
                f"RetrievalData: {n} queries, {len(self.positives)} positive lists and {len(self.grades)} grade "
                "lists; expected one positive list and one grade list per query."
            )
        n_docs = len(self.corpus)
        for row, (pos, grade) in enumerate(zip(self.positives, self.grades)):
            if len(pos) != len(grade):
                raise HardnegError(
                    f"RetrievalData: query {self.queries.ids[row]!r} has {len(pos)} positives but {len(grade)} "
                    "grades; expected one grade per positive."
                )
            if len(pos) and (int(np.min(pos)) < 0 or int(np.max(pos)) >= n_docs):
                raise HardnegError(
                    f"RetrievalData: query {self.queries.ids[row]!r} has a positive row outside the corpus "
                    f"(0..{n_docs - 1}): {np.asarray(pos).tolist()}"
                )

    @cached_property
    def _fingerprint(self) -> str:
        digest = hashlib.sha256(_FINGERPRINT_VERSION)

        def put(text: str) -> None:
            data = text.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)

        digest.update(len(self.corpus).to_bytes(8, "little"))
        corpus = self.corpus
        for fields in zip(corpus.ids.iter_bytes(), corpus.titles.iter_bytes(), corpus.texts.iter_bytes()):
            digest.update(b"".join(piece for data in fields for piece in (len(data).to_bytes(8, "little"), data)))
        digest.update(len(self.queries).to_bytes(8, "little"))
        for query_id, text, pos, grade in zip(self.queries.ids, self.queries.texts, self.positives, self.grades):
            put(query_id)
            put(text)
            digest.update(len(pos).to_bytes(8, "little"))
            digest.update(np.ascontiguousarray(pos, dtype="<i4").tobytes())
            digest.update(np.ascontiguousarray(grade, dtype="<i4").tobytes())
        return digest.hexdigest()

    @property
    def source(self) -> str:
        """Where the data came from, in words (:meth:`DataSource.describe`)."""
        return self.origin.describe()

    def fingerprint(self) -> str:
        """A sha256 hex digest of the content: corpus ids, titles and texts, query ids and texts, positives and grades.

        It does not depend on where the data came from (``origin``), so a gzipped copy
        of a folder has the same fingerprint. Computed once per object.
        """
        return self._fingerprint

    def qrels(self) -> dict[str, dict[str, int]]:
        """Relevance judgements as ``{query_id: {doc_id: grade}}`` (positives only), for evaluation tools."""
        ids = self.corpus.ids
        return {
            query_id: {ids[int(row)]: int(grade) for row, grade in zip(pos, grade_row)}
            for query_id, pos, grade_row in zip(self.queries.ids, self.positives, self.grades)
        }

    def subset(self, query_rows: Sequence[int]) -> RetrievalData:
        """The same corpus with only some of the queries.

        Args:
            query_rows: rows of the queries to keep, in the order wanted; each at most once.

        Returns:
            A new :class:`RetrievalData` sharing this corpus.

        Raises:
            HardnegError: a row is out of range, not an integer, or repeated.
        """
        rows = np.asarray(query_rows)
        if rows.size == 0:
            rows = rows.astype(np.int64)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise HardnegError(f"subset: expected a sequence of integer query rows, got {query_rows!r}")
        n = len(self.queries)
        bad = rows[(rows < -n) | (rows >= n)] if n else rows
        if bad.size:
            raise HardnegError(f"subset: query row {int(bad[0])} is out of range for {n} queries (0..{n - 1}).")
        rows = np.where(rows < 0, rows + n, rows)
        if len(np.unique(rows)) != len(rows):
            raise HardnegError("subset: a query row occurs more than once; pass each row at most once.")
        picked = [int(r) for r in rows]
        return RetrievalData(
            corpus=self.corpus,
            queries=Queries(
                ids=tuple(self.queries.ids[r] for r in picked),
                texts=tuple(self.queries.texts[r] for r in picked),
            ),
            positives=tuple(self.positives[r] for r in picked),
            grades=tuple(self.grades[r] for r in picked),
            origin=self.origin.of_subset(len(picked), n),
        )


def _distinct(values: Sequence[str]) -> int:
    """How many different values there are (a column's are counted by Arrow over its bytes: no Python strings)."""
    if not isinstance(values, TextColumn):
        return len(set(values))
    import pyarrow as pa
    import pyarrow.compute as pc

    count = pc.count_distinct(values.to_arrow()).as_py() if len(values) else 0
    pa.default_memory_pool().release_unused()  # Arrow's allocator would keep the hash table's pages
    return count


def _first_duplicate(ids: Sequence[str]) -> str:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            return item
        seen.add(item)
    return ""


def _passage(title: str, text: str) -> str:
    if not title.strip():
        return text
    if not text.strip():
        return title
    return f"{title} {text}"


def frozen_int32(values: Iterable[int]) -> np.ndarray:
    arr = np.fromiter(values, dtype=np.int32)
    arr.flags.writeable = False
    return arr


# --------------------------------------------------------------------------- reading files
