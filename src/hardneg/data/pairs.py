"""Pairs files: (query, positive text or texts) rows as JSON Lines, CSV, TSV or Parquet."""

from __future__ import annotations

import csv
import gzip
import io
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from hardneg.data.readers import (
    JSON_SUFFIXES,
    CorpusRead,
    base_suffix,
    is_gz,
    iter_json_lines,
    json_type,
    read_corpus_file,
)
from hardneg.data.text_column import TextColumn
from hardneg.data.values import Corpus, DataSource, Queries, RetrievalData
from hardneg.errors import HardnegError

logger = logging.getLogger(__name__)

PAIRS_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


class PairsBuilder:
    """Collects (query, positive) cells and turns them into RetrievalData.

    Positive texts are matched to the corpus once, in :meth:`build`, by Arrow over the corpus's
    stored bytes (a passage ``"{title} {text}"`` first, then a text alone; the first such row), so a
    corpus of millions is never copied into Python lists or dictionaries. Texts found nowhere become
    new documents ``d<n>`` appended after the corpus, in the order they were first read.
    """

    def __init__(self, corpus: CorpusRead | Corpus | None, corpus_name: str) -> None:
        self.query_positives: dict[str, list[int]] = {}  # query -> indices into self.cells
        self.cells: list[str] = []  # distinct positive texts, in first-read order
        self.cell_index: dict[str, int] = {}
        self.empty_cells = 0
        self.first_empty_where = ""
        self.corpus_name = corpus_name
        self.corpus_empty: str = ""
        if isinstance(corpus, CorpusRead):
            if corpus.empty_ids:
                self.corpus_empty = corpus.empty_summary()
            corpus = corpus.corpus
        self.corpus: Corpus | None = corpus

    def _cell(self, text: str) -> int:
        index = self.cell_index.get(text)
        if index is None:
            index = self.cell_index[text] = len(self.cells)
            self.cells.append(text)
        return index

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
                f"{json_type(query)} {query!r}."
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
                f"{json_type(positive)} {positive!r}."
            )
        rows = self.query_positives.setdefault(query, [])
        empty_here = len(cells) == 0
        for cell in cells:
            if cell is None or (isinstance(cell, str) and not cell.strip()):
                empty_here = True
                continue
            if not isinstance(cell, str):
                raise HardnegError(
                    f"{where()}: column {positive_column!r} must hold strings, got {json_type(cell)} {cell!r} "
                    f"for query {query[:80]!r}."
                )
            rows.append(self._cell(cell))
        if empty_here:
            self.empty_cells += 1
            if not self.first_empty_where:
                self.first_empty_where = where()

    def build(self, source: DataSource, origin: str) -> RetrievalData:
        """The collected pairs as data; ``origin`` names the input in messages."""
        kept = [(text, rows) for text, rows in self.query_positives.items() if rows]
        self._log_skipped(origin, dropped=len(self.query_positives) - len(kept))
        if not kept:
            raise HardnegError(
                f"{origin}: no query has a non-empty positive ({len(self.query_positives)} distinct queries read); "
                "expected at least one. Check the column names and the file's content."
            )
        cell_rows, corpus = self._rows_and_corpus()
        appended = len(corpus) - len(self.corpus) if self.corpus is not None else 0
        if appended:
            logger.info(
                "%d positive(s) of %s were not found in corpus %s and were appended to it as new documents.",
                appended,
                origin,
                self.corpus_name,
            )
        positives = [_frozen(np.unique(cell_rows[np.asarray(cells, np.int64)].astype(np.int32))) for _, cells in kept]
        return RetrievalData(
            corpus=corpus,
            queries=Queries(tuple(f"q{i}" for i in range(len(kept))), tuple(text for text, _ in kept)),
            positives=tuple(positives),
            grades=tuple(_frozen(np.ones(len(pos), dtype=np.int32)) for pos in positives),
            origin=source,
        )

    def _rows_and_corpus(self) -> tuple[np.ndarray, Corpus]:
        """The corpus row of each positive text read, and the corpus with the unmatched texts appended."""
        rows = np.full(len(self.cells), -1, np.int64)
        if self.corpus is not None:
            rows = self.corpus.passages.rows_of(self.cells)
            unmatched = np.flatnonzero(rows < 0)
            rows[unmatched] = self.corpus.texts.rows_of([self.cells[i] for i in unmatched])
        new = np.flatnonzero(rows < 0)
        before = len(self.corpus) if self.corpus is not None else 0
        rows[new] = before + np.arange(len(new))
        texts = [self.cells[i] for i in new]
        ids = _fresh_ids(self.corpus, len(new))
        if self.corpus is None:
            return rows, Corpus(ids, [""] * len(ids), texts)
        if not len(new):
            return rows, self.corpus  # as read: in memory or memory-mapped, not copied
        old = self.corpus
        return rows, Corpus(_appended(old.ids, ids), _appended(old.titles, [""] * len(ids)), _appended(old.texts, texts))

    def _log_skipped(self, origin: str, *, dropped: int) -> None:
        """One warning for empty corpus documents and empty positive cells."""
        if not (self.empty_cells or self.corpus_empty):
            return
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


def _fresh_ids(corpus: Corpus | None, count: int) -> list[str]:
    """``count`` ids ``d<n>`` (``n`` from the corpus size up) that the corpus does not use."""
    out: list[str] = []
    start = len(corpus) if corpus is not None else 0
    while len(out) < count:
        batch = [f"d{n}" for n in range(start, start + count - len(out))]
        taken = corpus.rows_of(batch) >= 0 if corpus is not None else np.zeros(len(batch), bool)
        out += [doc_id for doc_id, used in zip(batch, taken.tolist()) if not used]
        start += len(batch)
    return out


def _appended(column: TextColumn, texts: Sequence[str]) -> TextColumn:
    """``column`` followed by ``texts``, copied byte for byte by Arrow (no Python string per row)."""
    import pyarrow as pa

    tail = pa.array([text.encode("utf-8", "surrogatepass") for text in texts], pa.large_binary())
    return TextColumn.from_arrow(pa.chunked_array([column.to_arrow(), tail]))


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


def missing_columns_error(where: str, wanted: Sequence[str], present: Iterable[str], what: str) -> HardnegError:
    missing = [c for c in wanted if c not in set(present)]
    return HardnegError(
        f"{where}: missing column(s) {', '.join(repr(c) for c in missing)}; {what} has {sorted(present)}. "
        "Name the columns to use: --query-column / --positive-column on the command line, "
        "query_column= / positive_column= in Python."
    )


def _pairs_from_json(path: Path, builder: PairsBuilder, query_column: str, positive_column: str) -> None:
    for lineno, obj in iter_json_lines(path):
        if query_column not in obj or positive_column not in obj:
            raise missing_columns_error(f"{path}:{lineno}", (query_column, positive_column), obj, "the record")
        builder.add(
            obj[query_column], obj[positive_column], lambda n=lineno: f"{path}:{n}", query_column, positive_column
        )


def _pairs_from_delimited(path: Path, builder: PairsBuilder, query_column: str, positive_column: str) -> None:
    delimiter = "\t" if base_suffix(path) == ".tsv" else ","
    try:
        raw = gzip.open(path, "rb") if is_gz(path) else open(path, "rb")  # noqa: SIM115
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
                raise missing_columns_error(f"{path}:1", (query_column, positive_column), header, "the header")
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


def _pairs_from_parquet(path: Path, builder: PairsBuilder, query_column: str, positive_column: str) -> None:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise HardnegError("Reading Parquet needs pyarrow: pip install 'pyarrow>=14'") from None
    try:
        names = list(pq.read_schema(path).names)
        if query_column not in names or positive_column not in names:
            raise missing_columns_error(str(path), (query_column, positive_column), names, "the file")
        table = pq.read_table(path, columns=[query_column, positive_column])
    except HardnegError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for corrupt files
        raise HardnegError(f"{path}: cannot read as Parquet ({exc}).") from None
    queries = table.column(query_column).to_pylist()
    positives = table.column(positive_column).to_pylist()
    for index, (query, positive) in enumerate(zip(queries, positives)):
        builder.add(query, positive, lambda n=index: f"{path}: row {n + 1}", query_column, positive_column)


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
        raise HardnegError(f"{file}: no such file; expected a pairs file ({', '.join(PAIRS_SUFFIXES)}).")
    suffix = base_suffix(file)
    if suffix not in PAIRS_SUFFIXES or (suffix == ".parquet" and is_gz(file)):
        raise HardnegError(
            f"{file}: unsupported pairs format; expected one of {', '.join(PAIRS_SUFFIXES)} "
            "(the text formats optionally gzipped as .gz)."
        )
    corpus_read = read_corpus_file(corpus) if corpus is not None else None
    corpus_name = str(corpus_read.path) if corpus_read is not None else ""
    builder = PairsBuilder(corpus_read, corpus_name)
    if suffix in JSON_SUFFIXES:
        _pairs_from_json(file, builder, query_column, positive_column)
    elif suffix == ".parquet":
        _pairs_from_parquet(file, builder, query_column, positive_column)
    else:
        _pairs_from_delimited(file, builder, query_column, positive_column)
    source = DataSource("pairs", path=str(file), corpus=corpus_name, query_column=query_column,
                        positive_column=positive_column)
    data = builder.build(source, str(file))
    logger.info("Loaded %s: %d documents, %d queries.", data.source, len(data.corpus), len(data.queries))
    return data
