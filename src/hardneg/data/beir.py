"""BEIR folders: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``, each optionally gzipped."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hardneg.data.readers import CorpusRead, get_id, get_str, iter_json_lines, one_of, read_beir_corpus, read_lines
from hardneg.data.values import Corpus, DataSource, Queries, RetrievalData, frozen_int32
from hardneg.errors import HardnegError

logger = logging.getLogger(__name__)

_SHARED_READS: ContextVar[dict | None] = ContextVar("hardneg_shared_corpus_reads", default=None)


@contextlib.contextmanager
def shared_corpus_reads() -> Iterator[None]:
    """Within this block each corpus file is parsed once: a second split of the same BEIR folder
    (``train``, then ``dev``) gets the first one's :class:`~hardneg.data.Corpus` object, not a second parse
    and a second copy. Nothing is kept after the block."""
    token = _SHARED_READS.set({})
    try:
        yield
    finally:
        _SHARED_READS.reset(token)


def _read_corpus(path: Path) -> CorpusRead:
    shared = _SHARED_READS.get()
    if shared is None:
        return read_beir_corpus(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in shared:
        shared[key] = read_beir_corpus(path)
    return shared[key]


@dataclass(frozen=True)
class _Files:
    folder: Path
    corpus: Path
    queries: Path
    qrels: Path


@dataclass
class _Qrels:
    """What the qrels file said: positives per query, plus what was skipped and why."""

    judged: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)  # query -> row -> (grade, line)
    graded: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)  # every judgement
    non_positive_queries: set[str] = field(default_factory=set)
    empty_positive_queries: set[str] = field(default_factory=set)  # a positive qrel to a skipped empty document
    skipped: int = 0
    duplicates: int = 0
    n_rows: int = 0


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
    files = _locate(Path(path), split)
    read = _read_corpus(files.corpus)
    if len(read.corpus) == 0:
        skipped = f" ({len(read.empty_ids)} had an empty text)" if read.empty_ids else ""
        raise HardnegError(f"{files.corpus}: no documents{skipped}; expected one JSON object per line with _id and "
                           "text.")
    queries = _read_queries(files.queries)
    qrels = _read_qrels(files, read, queries)
    _log_skipped(files.qrels, read, qrels)
    if not qrels.judged:
        raise HardnegError(
            f"{files.qrels}: split {split!r} has no query with a positive (score > 0) qrel among its "
            f"{qrels.n_rows} row(s); expected at least one. Check the split name and the score column."
        )
    data = _assemble(read.corpus, queries, qrels, files, DataSource("beir", path=str(files.folder), split=split))
    logger.info("Loaded %s: %d documents, %d queries.", data.source, len(data.corpus), len(data.queries))
    return data


def _locate(folder: Path, split: str) -> _Files:
    """The folder's three files; a missing one raises naming it and the splits there are."""
    if not folder.is_dir():
        raise HardnegError(
            f"{folder}: not a directory; expected a BEIR folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv."
        )
    corpus_path = one_of(folder, "corpus.jsonl", "corpus.jsonl.gz")
    queries_path = one_of(folder, "queries.jsonl", "queries.jsonl.gz")
    qrels_dir = folder / "qrels"
    qrels_path = one_of(qrels_dir, f"{split}.tsv", f"{split}.tsv.gz") if qrels_dir.is_dir() else None
    if corpus_path is None or queries_path is None or qrels_path is None:
        found = (("corpus.jsonl", corpus_path), ("queries.jsonl", queries_path), (f"qrels/{split}.tsv", qrels_path))
        missing = [name for name, path in found if path is None]
        splits = _available_splits(qrels_dir)
        raise HardnegError(
            f"{folder}: missing {', '.join(missing)} (plain or .gz); expected a BEIR folder with corpus.jsonl, "
            f"queries.jsonl and qrels/<split>.tsv. Available splits: {', '.join(splits) if splits else 'none'}."
        )
    return _Files(folder, corpus_path, queries_path, qrels_path)


def _read_queries(path: Path) -> dict[str, tuple[str, int]]:
    """Map from query id to (text, line)."""
    out: dict[str, tuple[str, int]] = {}
    for lineno, obj in iter_json_lines(path):
        query_id = get_id(obj, path, lineno)
        text = get_str(obj, "text", query_id, path, lineno, required=True)
        if query_id in out:
            raise HardnegError(
                f"{path}:{lineno}: duplicate query id {query_id!r}, first defined at line {out[query_id][1]}; "
                "query ids must be unique. Remove or rename one of them."
            )
        out[query_id] = (text, lineno)
    return out


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


def _qrels_lines(path: Path):
    """Yield ``(line, query id, doc id, grade)`` of each judgement; a header line is skipped."""
    for lineno, line in read_lines(path):
        stripped = line.rstrip("\r\n")
        if not stripped.strip():
            continue
        fields = [f.strip() for f in stripped.split("\t")]
        if len(fields) != 3:
            trec = "This looks like TREC qrels (query Q0 doc score); drop the second column. "
            trec = trec if len(fields) == 4 else ""
            raise HardnegError(
                f"{path}:{lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                f"got {len(fields)}: {stripped[:200]!r}. {trec}Separate the fields with single tabs."
            )
        query_id, doc_id, score_text = fields
        score = _parse_score(score_text)
        if score is None:
            if lineno == 1 and not _is_number(score_text):  # header line
                continue
            raise HardnegError(
                f"{path}:{lineno}: score of query {query_id!r}, document {doc_id!r} must be an integer, "
                f"got {score_text!r}. Write relevance grades as integers (e.g. 0, 1, 2)."
            )
        yield lineno, query_id, doc_id, score


def _read_qrels(files: _Files, read: CorpusRead, queries: dict[str, tuple[str, int]]) -> _Qrels:
    out = _Qrels()
    judgements = list(_qrels_lines(files.qrels))
    rows = read.corpus.rows_of([doc_id for _, _, doc_id, _ in judgements]).tolist()
    for (lineno, query_id, doc_id, score), found in zip(judgements, rows):
        out.n_rows += 1
        if query_id not in queries:
            raise HardnegError(
                f"{files.qrels}:{lineno}: query id {query_id!r} is not in {files.queries.name}; every qrels query "
                "must be defined there. Add the query or remove the qrels line."
            )
        row = found if found >= 0 else None
        if row is None:
            if doc_id not in read.empty_ids:
                raise HardnegError(
                    f"{files.qrels}:{lineno}: corpus id {doc_id!r} (query {query_id!r}) is not in "
                    f"{files.corpus.name}; every qrels document must be in the corpus. Add the document or remove "
                    "the qrels line."
                )
            out.skipped += 1
            if score > 0:
                out.empty_positive_queries.add(query_id)
            continue
        previous = out.graded.get((query_id, row))
        if previous is not None:
            if previous[0] != score:
                raise HardnegError(
                    f"{files.qrels}:{lineno}: query {query_id!r}, document {doc_id!r} judged {score} here but "
                    f"{previous[0]} at line {previous[1]}; expected one grade per pair. Keep one of the lines."
                )
            out.duplicates += 1
            continue
        out.graded[(query_id, row)] = (score, lineno)
        if score <= 0:
            out.non_positive_queries.add(query_id)
        else:
            out.judged.setdefault(query_id, {})[row] = (score, lineno)
    return out


def _log_skipped(qrels_path: Path, read: CorpusRead, qrels: _Qrels) -> None:
    """One warning for empty documents and repeated lines; an info line for queries without positives."""
    if read.empty_ids:
        dropped = len(qrels.empty_positive_queries - qrels.judged.keys())
        logger.warning(
            "%s; skipped %d qrel(s) in %s pointing to them; %d quer%s left without a positive and not loaded. "
            "Fill in or remove those documents.",
            read.empty_summary(),
            qrels.skipped,
            qrels_path,
            dropped,
            "y" if dropped == 1 else "ies",
        )
    if qrels.duplicates:
        logger.warning(
            "%s: %d repeated qrels line(s) with the same grade were counted once.", qrels_path, qrels.duplicates
        )
    only_non_positive = len(qrels.non_positive_queries - qrels.judged.keys())
    if only_non_positive:
        logger.info("%s: %d queries have only score <= 0 qrels and are not loaded.", qrels_path, only_non_positive)


def _assemble(
    corpus: Corpus, queries: dict[str, tuple[str, int]], qrels: _Qrels, files: _Files, origin: DataSource
) -> RetrievalData:
    """The judged queries, in qrels order, with sorted positives and their grades."""
    query_ids: list[str] = []
    query_texts: list[str] = []
    positives: list[np.ndarray] = []
    grades: list[np.ndarray] = []
    for query_id, per_query in qrels.judged.items():
        text, query_line = queries[query_id]
        if not text.strip():
            raise HardnegError(
                f"{files.queries}:{query_line}: query {query_id!r} has empty text but has positives in "
                f"{files.qrels.name}; expected a non-empty query. Fill in the text or remove its qrels."
            )
        rows = sorted(per_query)
        query_ids.append(query_id)
        query_texts.append(text)
        positives.append(frozen_int32(rows))
        grades.append(frozen_int32(per_query[r][0] for r in rows))
    return RetrievalData(
        corpus=corpus,
        queries=Queries(tuple(query_ids), tuple(query_texts)),
        positives=tuple(positives),
        grades=tuple(grades),
        origin=origin,
    )
