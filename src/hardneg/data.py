"""Retrieval data: a corpus, queries and their positives, and the loaders that read them.

Three input shapes are understood, all converted at the boundary into one immutable
:class:`RetrievalData`:

* a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``, each
  optionally gzipped) — :func:`load_beir`;
* a pairs file (query text, positive text or texts) as JSON Lines, CSV, TSV or
  Parquet, optionally with a separate corpus — :func:`load_pairs`;
* a Hugging Face ``datasets.Dataset`` with the same two columns —
  :func:`from_hf_dataset`.

Inside the toolkit queries and documents are row indices; texts are looked up only at
the edges. Every problem with the input raises :class:`~hardneg.errors.HardnegError`
naming the file, the line and the id, what was expected and how to fix it. Documents
with no text at all and empty positive cells are skipped, counted and reported in one
warning; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.errors import HardnegError

logger = logging.getLogger(__name__)

_JSON_SUFFIXES = (".jsonl", ".json")
_PAIRS_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
_FINGERPRINT_VERSION = b"hardneg.data.fingerprint.v1\0"


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Corpus:
    """The documents, in row order.

    Attributes:
        ids: document id of each row, unique.
        titles: title of each row; ``""`` when the source has none.
        texts: body text of each row.
    """

    ids: tuple[str, ...]
    titles: tuple[str, ...]
    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("ids", "titles", "texts"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not len(self.ids) == len(self.titles) == len(self.texts):
            raise HardnegError(
                f"Corpus: {len(self.ids)} ids, {len(self.titles)} titles and {len(self.texts)} texts; "
                "expected one of each per document (use '' for a missing title)."
            )
        if len(set(self.ids)) != len(self.ids):
            duplicate = _first_duplicate(self.ids)
            raise HardnegError(f"Corpus: document id {duplicate!r} occurs more than once; ids must be unique.")

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def row_of(self) -> dict[str, int]:
        """Map from document id to row."""
        return {doc_id: row for row, doc_id in enumerate(self.ids)}

    @cached_property
    def passages(self) -> tuple[str, ...]:
        """The text encoders, BM25 and exports see: ``"{title} {text}"``, or the text alone when there is no title."""
        return tuple(_passage(title, text) for title, text in zip(self.titles, self.texts))


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
        if len(set(self.ids)) != len(self.ids):
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
        source: a human description of where the data came from.
    """

    corpus: Corpus
    queries: Queries
    positives: tuple[np.ndarray, ...]
    grades: tuple[np.ndarray, ...]
    source: str = ""

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
        for doc_id, title, text in zip(self.corpus.ids, self.corpus.titles, self.corpus.texts):
            put(doc_id)
            put(title)
            put(text)
        digest.update(len(self.queries).to_bytes(8, "little"))
        for query_id, text, pos, grade in zip(self.queries.ids, self.queries.texts, self.positives, self.grades):
            put(query_id)
            put(text)
            digest.update(len(pos).to_bytes(8, "little"))
            digest.update(np.ascontiguousarray(pos, dtype="<i4").tobytes())
            digest.update(np.ascontiguousarray(grade, dtype="<i4").tobytes())
        return digest.hexdigest()

    def fingerprint(self) -> str:
        """A sha256 hex digest of the content: corpus ids, titles and texts, query ids and texts, positives and grades.

        It does not depend on where the data came from (``source``), so a gzipped copy
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
            source=f"{self.source} (subset: {len(picked)} of {n} queries)",
        )


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


def _frozen_int32(values: Iterable[int]) -> np.ndarray:
    arr = np.fromiter(values, dtype=np.int32)
    arr.flags.writeable = False
    return arr


# --------------------------------------------------------------------------- reading files


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _base_suffix(path: Path) -> str:
    """The format suffix, looking through a trailing ``.gz``."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, line)`` of a UTF-8 text file, gzipped when it ends in ``.gz``."""
    try:
        handle = gzip.open(path, "rb") if _is_gz(path) else open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise HardnegError(f"{path}: no such file.") from None
    except OSError as exc:
        raise HardnegError(f"{path}: cannot open ({exc}).") from None
    lineno = 0
    try:
        with handle:
            for lineno, raw in enumerate(handle, start=1):  # noqa: B007
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise HardnegError(
                        f"{path}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start}); "
                        "expected UTF-8 text. Re-encode the file as UTF-8."
                    ) from None
                if lineno == 1 and line.startswith("\ufeff"):
                    line = line[1:]
                yield lineno, line
    except (OSError, EOFError) as exc:  # a truncated or non-gzip .gz file
        raise HardnegError(
            f"{path}: could not read after line {lineno} ({exc}); "
            + ("expected a complete gzip file. " if _is_gz(path) else "")
            + "Check that the file is complete and not corrupt."
        ) from None


def _iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSON Lines file."""
    for lineno, line in _read_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            hint = (
                " The file looks like one JSON array; convert it to JSON Lines, e.g. `jq -c '.[]' in.json > out.jsonl`."
                if lineno == 1 and line.lstrip().startswith("[")
                else " Fix or remove that line."
            )
            raise HardnegError(
                f"{path}:{lineno}: malformed JSON ({exc.msg} at column {exc.colno}); "
                f"expected one JSON object per line (JSON Lines).{hint}"
            ) from None
        if not isinstance(obj, dict):
            raise HardnegError(
                f"{path}:{lineno}: expected a JSON object per line (JSON Lines), got a JSON {_json_type(obj)}. "
                "Write each record as one object, e.g. {\"_id\": \"d1\", \"text\": \"...\"}."
            )
        yield lineno, obj


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _get_id(obj: dict[str, Any], path: Path, lineno: int) -> str:
    if "_id" not in obj:
        raise HardnegError(
            f"{path}:{lineno}: missing field '_id'; expected an object with '_id' and 'text', "
            f"got fields {sorted(obj)}. Add an '_id' to that record."
        )
    value = obj["_id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise HardnegError(
            f"{path}:{lineno}: '_id' must be a string or an integer, got {_json_type(value)} {value!r}."
        )
    doc_id = str(value)
    if not doc_id.strip():
        raise HardnegError(f"{path}:{lineno}: '_id' is empty; give every record a non-empty id.")
    return doc_id


def _get_str(obj: dict[str, Any], key: str, record_id: str, path: Path, lineno: int, *, required: bool) -> str:
    if key not in obj:
        if not required:
            return ""
        raise HardnegError(
            f"{path}:{lineno}: record {record_id!r} has no field '{key}'; expected '_id' and '{key}', "
            f"got fields {sorted(obj)}. Add a '{key}' string to that record."
        )
    value = obj[key]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise HardnegError(
            f"{path}:{lineno}: record {record_id!r}: field '{key}' must be a string, got {_json_type(value)} "
            f"{value!r}."
        )
    return value


@dataclass
class _CorpusRead:
    """A corpus as read from a file, plus what was skipped for having no text."""

    corpus: Corpus
    empty_ids: dict[str, int]  # id of each skipped empty document -> its line
    path: Path

    def empty_summary(self) -> str:
        first_id, first_line = next(iter(self.empty_ids.items()))
        return (
            f"skipped {len(self.empty_ids)} document(s) with empty title and text in {self.path} "
            f"(first: id {first_id!r} at line {first_line})"
        )


def _read_beir_corpus(path: Path) -> _CorpusRead:
    ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    line_of: dict[str, int] = {}
    empty: dict[str, int] = {}
    for lineno, obj in _iter_json_lines(path):
        doc_id = _get_id(obj, path, lineno)
        text = _get_str(obj, "text", doc_id, path, lineno, required=True)
        title = _get_str(obj, "title", doc_id, path, lineno, required=False)
        if doc_id in line_of:
            raise HardnegError(
                f"{path}:{lineno}: duplicate document id {doc_id!r}, first defined at line {line_of[doc_id]}; "
                "document ids must be unique. Remove or rename one of them."
            )
        line_of[doc_id] = lineno
        if not text.strip() and not title.strip():
            empty[doc_id] = lineno
            continue
        ids.append(doc_id)
        titles.append(title)
        texts.append(text)
    return _CorpusRead(Corpus(tuple(ids), tuple(titles), tuple(texts)), empty, path)


def _read_text_corpus(path: Path) -> _CorpusRead:
    """One passage per line; the document on line ``n`` gets id ``d{n-1}``."""
    ids: list[str] = []
    texts: list[str] = []
    empty: dict[str, int] = {}
    for lineno, line in _read_lines(path):
        text = line.rstrip("\r\n")
        doc_id = f"d{lineno - 1}"
        if not text.strip():
            empty[doc_id] = lineno
            continue
        ids.append(doc_id)
        texts.append(text)
    return _CorpusRead(Corpus(tuple(ids), ("",) * len(ids), tuple(texts)), empty, path)


def _read_beir_queries(path: Path) -> dict[str, tuple[str, int]]:
    """Map from query id to (text, line)."""
    out: dict[str, tuple[str, int]] = {}
    for lineno, obj in _iter_json_lines(path):
        query_id = _get_id(obj, path, lineno)
        text = _get_str(obj, "text", query_id, path, lineno, required=True)
        if query_id in out:
            raise HardnegError(
                f"{path}:{lineno}: duplicate query id {query_id!r}, first defined at line {out[query_id][1]}; "
                "query ids must be unique. Remove or rename one of them."
            )
        out[query_id] = (text, lineno)
    return out


def _one_of(folder: Path, *names: str) -> Path | None:
    found = [folder / name for name in names if (folder / name).is_file()]
    if len(found) > 1:
        raise HardnegError(
            f"{folder}: both {found[0].name} and {found[1].name} exist; expected one of them. "
            "Remove the one that is stale."
        )
    return found[0] if found else None


def _available_splits(qrels_dir: Path) -> list[str]:
    if not qrels_dir.is_dir():
        return []
    splits = set()
    for child in qrels_dir.iterdir():
        name = child.name
        for suffix in (".tsv", ".tsv.gz"):
            if name.endswith(suffix) and child.is_file():
                splits.add(name[: -len(suffix)])
    return sorted(splits)


def _parse_score(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- BEIR


def load_beir(path: str | Path, split: str = "train") -> RetrievalData:
    """Load a BEIR-layout folder.

    The folder holds ``corpus.jsonl`` (``_id``, optional ``title``, ``text``),
    ``queries.jsonl`` (``_id``, ``text``) and ``qrels/<split>.tsv`` (tab separated
    ``query-id corpus-id score``, header optional); each may be gzipped (``.gz``).

    Only queries with at least one qrel of score > 0 in the split are kept, in the
    order they first appear in the qrels. Documents whose title and text are both
    empty are skipped, as are qrels pointing to them; one warning gives the counts.

    Args:
        path: the folder.
        split: the qrels file to use, e.g. ``"train"``, ``"dev"`` or ``"test"``.

    Returns:
        The loaded data.

    Raises:
        HardnegError: a file or the split is missing, or a record is malformed
            (the message names file, line and id).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise HardnegError(
            f"{folder}: not a directory; expected a BEIR folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv."
        )
    corpus_path = _one_of(folder, "corpus.jsonl", "corpus.jsonl.gz")
    queries_path = _one_of(folder, "queries.jsonl", "queries.jsonl.gz")
    qrels_dir = folder / "qrels"
    qrels_path = _one_of(qrels_dir, f"{split}.tsv", f"{split}.tsv.gz") if qrels_dir.is_dir() else None
    if corpus_path is None or queries_path is None or qrels_path is None:
        missing = [
            name
            for name, found in (
                ("corpus.jsonl", corpus_path),
                ("queries.jsonl", queries_path),
                (f"qrels/{split}.tsv", qrels_path),
            )
            if found is None
        ]
        splits = _available_splits(qrels_dir)
        raise HardnegError(
            f"{folder}: missing {', '.join(missing)} (plain or .gz); expected a BEIR folder with corpus.jsonl, "
            f"queries.jsonl and qrels/<split>.tsv. Available splits: {', '.join(splits) if splits else 'none'}."
        )

    read = _read_beir_corpus(corpus_path)
    corpus = read.corpus
    queries = _read_beir_queries(queries_path)
    row_of = corpus.row_of

    judged: dict[str, dict[int, tuple[int, int]]] = {}  # query id -> row -> (grade, line); positives only
    graded: dict[tuple[str, int], tuple[int, int]] = {}  # (query id, row) -> (grade, line); every judgement
    non_positive_queries: set[str] = set()
    skipped_qrels = 0
    empty_positive_queries: set[str] = set()  # queries with a positive qrel to a skipped empty document
    duplicate_qrels = 0
    n_rows = 0
    for lineno, line in _read_lines(qrels_path):
        stripped = line.rstrip("\r\n")
        if not stripped.strip():
            continue
        fields = [f.strip() for f in stripped.split("\t")]
        if len(fields) != 3:
            raise HardnegError(
                f"{qrels_path}:{lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                f"got {len(fields)}: {stripped[:200]!r}. "
                + (
                    "This looks like TREC qrels (query Q0 doc score); drop the second column. "
                    if len(fields) == 4
                    else ""
                )
                + "Separate the fields with single tabs."
            )
        query_id, doc_id, score_text = fields
        score = _parse_score(score_text)
        if score is None:
            if lineno == 1 and not _is_number(score_text):  # header line
                continue
            raise HardnegError(
                f"{qrels_path}:{lineno}: score of query {query_id!r}, document {doc_id!r} must be an integer, "
                f"got {score_text!r}. Write relevance grades as integers (e.g. 0, 1, 2)."
            )
        n_rows += 1
        if query_id not in queries:
            raise HardnegError(
                f"{qrels_path}:{lineno}: query id {query_id!r} is not in {queries_path.name}; every qrels query "
                "must be defined there. Add the query or remove the qrels line."
            )
        row = row_of.get(doc_id)
        if row is None:
            if doc_id in read.empty_ids:
                skipped_qrels += 1
                if score > 0:
                    empty_positive_queries.add(query_id)
                continue
            raise HardnegError(
                f"{qrels_path}:{lineno}: corpus id {doc_id!r} (query {query_id!r}) is not in {corpus_path.name}; "
                "every qrels document must be in the corpus. Add the document or remove the qrels line."
            )
        previous = graded.get((query_id, row))
        if previous is not None:
            previous_grade, previous_line = previous
            if previous_grade != score:
                raise HardnegError(
                    f"{qrels_path}:{lineno}: query {query_id!r}, document {doc_id!r} judged {score} here but "
                    f"{previous_grade} at line {previous_line}; expected one grade per pair. Keep one of the lines."
                )
            duplicate_qrels += 1
            continue
        graded[(query_id, row)] = (score, lineno)
        if score <= 0:
            non_positive_queries.add(query_id)
            continue
        judged.setdefault(query_id, {})[row] = (score, lineno)

    if read.empty_ids:
        dropped = len(empty_positive_queries - judged.keys())
        logger.warning(
            "%s; skipped %d qrel(s) in %s pointing to them; %d quer%s left without a positive and not loaded. "
            "Fill in or remove those documents.",
            read.empty_summary(),
            skipped_qrels,
            qrels_path,
            dropped,
            "y" if dropped == 1 else "ies",
        )
    if duplicate_qrels:
        logger.warning(
            "%s: %d repeated qrels line(s) with the same grade were counted once.", qrels_path, duplicate_qrels
        )

    only_non_positive = len(non_positive_queries - judged.keys())
    if only_non_positive:
        logger.info("%s: %d queries have only score <= 0 qrels and are not loaded.", qrels_path, only_non_positive)
    if not judged:
        raise HardnegError(
            f"{qrels_path}: split {split!r} has no query with a positive (score > 0) qrel among its {n_rows} "
            "row(s); expected at least one. Check the split name and the score column."
        )

    query_ids: list[str] = []
    query_texts: list[str] = []
    positives: list[np.ndarray] = []
    grades: list[np.ndarray] = []
    for query_id, per_query in judged.items():
        text, query_line = queries[query_id]
        if not text.strip():
            raise HardnegError(
                f"{queries_path}:{query_line}: query {query_id!r} has empty text but has positives in "
                f"{qrels_path.name}; expected a non-empty query. Fill in the text or remove its qrels."
            )
        rows = sorted(per_query)
        query_ids.append(query_id)
        query_texts.append(text)
        positives.append(_frozen_int32(rows))
        grades.append(_frozen_int32(per_query[r][0] for r in rows))

    data = RetrievalData(
        corpus=corpus,
        queries=Queries(tuple(query_ids), tuple(query_texts)),
        positives=tuple(positives),
        grades=tuple(grades),
        source=f"BEIR folder {folder} (split {split})",
    )
    logger.info("Loaded %s: %d documents, %d queries.", data.source, len(corpus), len(data.queries))
    return data


# --------------------------------------------------------------------------- pairs


class _PairsBuilder:
    """Collects (query, positive) cells and turns them into RetrievalData."""

    def __init__(self, corpus: _CorpusRead | Corpus | None, corpus_name: str) -> None:
        self.query_positives: dict[str, list[int]] = {}
        self.empty_cells = 0
        self.first_empty_where = ""
        self.corpus_name = corpus_name
        self.appended = 0
        self.corpus_empty: str = ""
        if isinstance(corpus, _CorpusRead):
            if corpus.empty_ids:
                self.corpus_empty = corpus.empty_summary()
            corpus = corpus.corpus
        self.ids: list[str] = list(corpus.ids) if corpus is not None else []
        self.titles: list[str] = list(corpus.titles) if corpus is not None else []
        self.texts: list[str] = list(corpus.texts) if corpus is not None else []
        self.has_corpus = corpus is not None
        self.by_passage: dict[str, int] = {}
        self.by_text: dict[str, int] = {}
        if corpus is not None:
            for row, passage in enumerate(corpus.passages):
                self.by_passage.setdefault(passage, row)
            for row, text in enumerate(corpus.texts):
                self.by_text.setdefault(text, row)
        self.taken_ids = set(self.ids)
        self.next_id = len(self.ids)

    def _row_for(self, text: str) -> int:
        row = self.by_passage.get(text)
        if row is None:
            row = self.by_text.get(text)
        if row is not None:
            return row
        while f"d{self.next_id}" in self.taken_ids:
            self.next_id += 1
        doc_id = f"d{self.next_id}"
        self.next_id += 1
        self.taken_ids.add(doc_id)
        row = len(self.ids)
        self.ids.append(doc_id)
        self.titles.append("")
        self.texts.append(text)
        self.by_passage[text] = row
        if self.has_corpus:
            self.appended += 1
        return row

    def add(
        self,
        query: object,
        positive: object,
        where: Callable[[], str],
        query_column: str,
        positive_column: str,
    ) -> None:
        if not isinstance(query, str):
            raise HardnegError(
                f"{where()}: column {query_column!r} must hold the query text as a string, got "
                f"{_json_type(query)} {query!r}."
            )
        if not query.strip():
            raise HardnegError(
                f"{where()}: empty query text in column {query_column!r}; expected a non-empty query. "
                "Fill it in or remove the row."
            )
        if positive is None:
            cells: Sequence[object] = ()
        elif isinstance(positive, str):
            cells = (positive,)
        elif isinstance(positive, (list, tuple)):
            cells = positive
        elif isinstance(positive, np.ndarray):
            cells = positive.tolist()
        else:
            raise HardnegError(
                f"{where()}: column {positive_column!r} must hold a positive text or a list of them, got "
                f"{_json_type(positive)} {positive!r}."
            )
        rows = self.query_positives.setdefault(query, [])
        empty_here = len(cells) == 0
        for cell in cells:
            if cell is None or (isinstance(cell, str) and not cell.strip()):
                empty_here = True
                continue
            if not isinstance(cell, str):
                raise HardnegError(
                    f"{where()}: column {positive_column!r} must hold strings, got {_json_type(cell)} {cell!r} "
                    f"for query {query[:80]!r}."
                )
            rows.append(self._row_for(cell))
        if empty_here:
            self.empty_cells += 1
            if not self.first_empty_where:
                self.first_empty_where = where()

    def build(self, source: str, origin: str) -> RetrievalData:
        kept = [(text, rows) for text, rows in self.query_positives.items() if rows]
        dropped = len(self.query_positives) - len(kept)
        if self.empty_cells or self.corpus_empty:
            parts = []
            if self.corpus_empty:
                parts.append(self.corpus_empty)
            if self.empty_cells:
                parts.append(
                    f"skipped {self.empty_cells} empty positive cell(s) in {origin} "
                    f"(first at {self.first_empty_where}); "
                    f"{dropped} quer{'y' if dropped == 1 else 'ies'} left without a positive and not loaded"
                )
            logger.warning("%s. Fill in or remove those rows.", "; ".join(parts))
        if not kept:
            raise HardnegError(
                f"{origin}: no query has a non-empty positive ({len(self.query_positives)} distinct queries read); "
                "expected at least one. Check the column names and the file's content."
            )
        if self.appended:
            logger.info(
                "%d positive(s) of %s were not found in corpus %s and were appended to it as new documents.",
                self.appended,
                origin,
                self.corpus_name,
            )
        positives = []
        for _, rows in kept:
            unique = np.unique(np.asarray(rows, dtype=np.int32))
            unique.flags.writeable = False
            positives.append(unique)
        grades = []
        for pos in positives:
            grade = np.ones(len(pos), dtype=np.int32)
            grade.flags.writeable = False
            grades.append(grade)
        return RetrievalData(
            corpus=Corpus(tuple(self.ids), tuple(self.titles), tuple(self.texts)),
            queries=Queries(tuple(f"q{i}" for i in range(len(kept))), tuple(text for text, _ in kept)),
            positives=tuple(positives),
            grades=tuple(grades),
            source=source,
        )


def _missing_columns_error(where: str, wanted: Sequence[str], present: Iterable[str], what: str) -> HardnegError:
    missing = [c for c in wanted if c not in set(present)]
    return HardnegError(
        f"{where}: missing column(s) {', '.join(repr(c) for c in missing)}; {what} has {sorted(present)}. "
        "Pass query_column= / positive_column= to name the columns to use."
    )


def _pairs_from_json(path: Path, builder: _PairsBuilder, query_column: str, positive_column: str) -> None:
    for lineno, obj in _iter_json_lines(path):
        if query_column not in obj or positive_column not in obj:
            raise _missing_columns_error(f"{path}:{lineno}", (query_column, positive_column), obj, "the record")
        builder.add(
            obj[query_column], obj[positive_column], lambda n=lineno: f"{path}:{n}", query_column, positive_column
        )


def _pairs_from_delimited(path: Path, builder: _PairsBuilder, query_column: str, positive_column: str) -> None:
    delimiter = "\t" if _base_suffix(path) == ".tsv" else ","
    try:
        raw = gzip.open(path, "rb") if _is_gz(path) else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise HardnegError(f"{path}: cannot open ({exc}).") from None
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            try:
                header = next(reader)
            except StopIteration:
                raise HardnegError(
                    f"{path}: empty file; expected a header row naming the columns "
                    f"{query_column!r} and {positive_column!r}."
                ) from None
            if query_column not in header or positive_column not in header:
                raise _missing_columns_error(f"{path}:1", (query_column, positive_column), header, "the header")
            qi, pi = header.index(query_column), header.index(positive_column)
            width = len(header)
            for record in reader:
                lineno = reader.line_num
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                if len(record) != width:
                    raise HardnegError(
                        f"{path}:{lineno}: expected {width} fields like the header, got {len(record)}. "
                        "Quote fields that contain the delimiter, quotes or line breaks."
                    )
                builder.add(record[qi], record[pi], lambda n=lineno: f"{path}:{n}", query_column, positive_column)
        except csv.Error as exc:
            raise HardnegError(
                f"{path}:{reader.line_num}: cannot parse ({exc}); fix the quoting of that line."
            ) from None
        except UnicodeDecodeError as exc:
            raise HardnegError(
                f"{path}: near line {reader.line_num + 1}: not valid UTF-8 ({exc.reason}); re-encode the file as UTF-8."
            ) from None
        except (OSError, EOFError) as exc:
            raise HardnegError(f"{path}: could not read after line {reader.line_num} ({exc}).") from None


def _pairs_from_parquet(path: Path, builder: _PairsBuilder, query_column: str, positive_column: str) -> None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise HardnegError("Reading Parquet needs pyarrow: pip install 'pyarrow>=14'") from None
    try:
        names = list(pq.read_schema(path).names)
        if query_column not in names or positive_column not in names:
            raise _missing_columns_error(str(path), (query_column, positive_column), names, "the file")
        table = pq.read_table(path, columns=[query_column, positive_column])
    except HardnegError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise HardnegError(f"{path}: cannot read as Parquet ({exc}).") from None
    queries = table.column(query_column).to_pylist()
    positives = table.column(positive_column).to_pylist()
    for index, (query, positive) in enumerate(zip(queries, positives)):
        builder.add(query, positive, lambda n=index: f"{path}: row {n + 1}", query_column, positive_column)


def _read_corpus_file(corpus: str | Path) -> _CorpusRead:
    path = Path(corpus)
    if path.is_dir():
        found = _one_of(path, "corpus.jsonl", "corpus.jsonl.gz")
        if found is None:
            raise HardnegError(f"{path}: a corpus folder must hold corpus.jsonl or corpus.jsonl.gz; neither is there.")
        path = found
    if not path.is_file():
        raise HardnegError(f"{path}: no such corpus file; expected a corpus.jsonl(.gz) or a .txt(.gz) file.")
    suffix = _base_suffix(path)
    if suffix in _JSON_SUFFIXES:
        return _read_beir_corpus(path)
    if suffix == ".txt":
        return _read_text_corpus(path)
    raise HardnegError(
        f"{path}: unsupported corpus format {suffix or '(no suffix)'!r}; expected .jsonl (with '_id', 'text', "
        "optional 'title') or .txt (one passage per line), optionally gzipped."
    )


def load_pairs(
    path: str | Path,
    *,
    query_column: str = "query",
    positive_column: str = "positive",
    corpus: str | Path | None = None,
) -> RetrievalData:
    """Load (query, positive) pairs.

    Formats: JSON Lines (``.jsonl``/``.json``), ``.csv``, ``.tsv`` (with a header
    row) and ``.parquet``; the text formats may be gzipped. A positive cell is a
    string or a list of strings; rows repeating a query text merge their positives.
    Queries get ids ``q0, q1, ...`` in order of first appearance.

    Without ``corpus`` the corpus is the positive texts, deduplicated by exact text,
    with ids ``d0, d1, ...``. With ``corpus`` (a BEIR ``corpus.jsonl(.gz)``, a folder
    holding one, or a ``.txt(.gz)`` with one passage per line whose line ``n`` gets
    id ``d{n-1}``), each positive is matched to the document whose passage
    (``"{title} {text}"``) or text equals it exactly; positives not found are
    appended to the corpus as new documents and counted in an INFO log line.

    Empty positive cells are skipped, counted and reported in one warning.

    Args:
        path: the pairs file.
        query_column: column holding the query text.
        positive_column: column holding the positive text(s).
        corpus: optional corpus file to mine negatives from.

    Returns:
        The loaded data.

    Raises:
        HardnegError: the file is missing, of an unknown format, lacks a column, or
            a row is malformed (the message names file and line).
    """
    file = Path(path)
    if not file.is_file():
        raise HardnegError(f"{file}: no such file; expected a pairs file ({', '.join(_PAIRS_SUFFIXES)}).")
    suffix = _base_suffix(file)
    if suffix not in _PAIRS_SUFFIXES or (suffix == ".parquet" and _is_gz(file)):
        raise HardnegError(
            f"{file}: unsupported pairs format; expected one of {', '.join(_PAIRS_SUFFIXES)} "
            "(the text formats optionally gzipped as .gz)."
        )
    corpus_read = _read_corpus_file(corpus) if corpus is not None else None
    corpus_name = str(corpus_read.path) if corpus_read is not None else ""
    builder = _PairsBuilder(corpus_read, corpus_name)
    if suffix in _JSON_SUFFIXES:
        _pairs_from_json(file, builder, query_column, positive_column)
    elif suffix == ".parquet":
        _pairs_from_parquet(file, builder, query_column, positive_column)
    else:
        _pairs_from_delimited(file, builder, query_column, positive_column)
    source = f"pairs file {file}" + (f" with corpus {corpus_name}" if corpus_name else "")
    data = builder.build(source, str(file))
    logger.info("Loaded %s: %d documents, %d queries.", source, len(data.corpus), len(data.queries))
    return data


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
        raise _missing_columns_error("from_hf_dataset", (query_column, positive_column), columns, "the dataset")
    corpus_read: _CorpusRead | None = None
    if corpus is not None:
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
                    f"from_hf_dataset: corpus[{index}] must be a string, got {_json_type(passage)} {passage!r}."
                )
            if not passage.strip():
                empty[f"d{index}"] = index + 1
                continue
            ids.append(f"d{index}")
            texts.append(passage)
        corpus_read = _CorpusRead(Corpus(tuple(ids), ("",) * len(ids), tuple(texts)), empty, Path("corpus"))
    builder = _PairsBuilder(corpus_read, "(given passages)")
    queries = dataset[query_column]
    positives = dataset[positive_column]
    for index, (query, positive) in enumerate(zip(queries, positives)):
        builder.add(
            query, positive, lambda n=index: f"dataset row {n} (0-based)", query_column, positive_column
        )
    source = f"Hugging Face dataset ({len(dataset)} rows)" + (" with given corpus" if corpus is not None else "")
    return builder.build(source, "the dataset")


def load(
    path: str | Path,
    *,
    split: str = "train",
    query_column: str = "query",
    positive_column: str = "positive",
    corpus: str | Path | None = None,
) -> RetrievalData:
    """Load a BEIR folder (a directory) or a pairs file (a file).

    Args:
        path: a BEIR folder or a pairs file.
        split: the qrels split of a BEIR folder; not used for pairs files.
        query_column: query column of a pairs file.
        positive_column: positive column of a pairs file.
        corpus: separate corpus for a pairs file; a BEIR folder has its own.

    Returns:
        The loaded data.

    Raises:
        HardnegError: the path does not exist, or a corpus was given with a BEIR folder,
            or the loader found a problem.
    """
    target = Path(path)
    if target.is_dir():
        if corpus is not None:
            raise HardnegError(
                f"{target}: a BEIR folder brings its own corpus.jsonl; got corpus={str(corpus)!r} as well. "
                "Drop the corpus argument, or pass a pairs file instead of the folder."
            )
        return load_beir(target, split=split)
    if target.is_file():
        return load_pairs(target, query_column=query_column, positive_column=positive_column, corpus=corpus)
    raise HardnegError(
        f"{target}: no such file or directory; expected a BEIR folder or a pairs file. "
        "For a Hugging Face Hub dataset use from_hf_dataset(datasets.load_dataset(...)[split])."
    )
