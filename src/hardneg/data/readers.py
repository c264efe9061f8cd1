"""Reading input files: lines (plain or gzipped, UTF-8 checked), JSON Lines records and corpus files.

Every problem raises :class:`~hardneg.errors.HardnegError` naming the file and line,
what was expected and how to fix it.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardneg.data.text_column import TextColumn, TextColumnBuilder
from hardneg.data.values import Corpus
from hardneg.errors import HardnegError

JSON_SUFFIXES = (".jsonl", ".json")


def is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def base_suffix(path: Path) -> str:
    """The format suffix, looking through a trailing ``.gz``."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    dot = name.rfind(".")
    return name[dot:] if dot >= 0 else ""


def open_bytes(path: Path):
    """``path`` opened for reading bytes, through gzip when it ends in ``.gz``."""
    return gzip.open(path, "rb") if is_gz(path) else open(path, "rb")  # noqa: SIM115


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(1-based line number, line)`` of a UTF-8 text file, gzipped when it ends in ``.gz``."""
    try:
        handle = open_bytes(path)
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
            + ("expected a complete gzip file. " if is_gz(path) else "")
            + "Check that the file is complete and not corrupt."
        ) from None


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a JSON Lines file."""
    for lineno, line in read_lines(path):
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
                f"{path}:{lineno}: expected a JSON object per line (JSON Lines), got a JSON {json_type(obj)}. "
                "Write each record as one object, e.g. {\"_id\": \"d1\", \"text\": \"...\"}."
            )
        yield lineno, obj


def json_type(value: object) -> str:
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


def get_id(obj: dict[str, Any], path: Path, lineno: int) -> str:
    if "_id" not in obj:
        raise HardnegError(
            f"{path}:{lineno}: missing field '_id'; expected an object with '_id' and 'text', "
            f"got fields {sorted(obj)}. Add an '_id' to that record."
        )
    value = obj["_id"]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise HardnegError(
            f"{path}:{lineno}: '_id' must be a string or an integer, got {json_type(value)} {value!r}."
        )
    doc_id = str(value)
    if not doc_id.strip():
        raise HardnegError(f"{path}:{lineno}: '_id' is empty; give every record a non-empty id.")
    return doc_id


def get_str(obj: dict[str, Any], key: str, record_id: str, path: Path, lineno: int, *, required: bool) -> str:
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
            f"{path}:{lineno}: record {record_id!r}: field '{key}' must be a string, got {json_type(value)} "
            f"{value!r}."
        )
    return value


@dataclass
class CorpusRead:
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


def read_beir_corpus(path: Path) -> CorpusRead:
    """A ``corpus.jsonl(.gz)``: ``_id`` (string or integer), ``text``, optional ``title``; documents with
    neither title nor text are set aside.

    A well-formed file is parsed column-wise by Arrow's JSON reader (multi-threaded, no Python object per
    document); anything that needs a closer look (a malformed line, an integer id, a duplicate id, an empty
    document...) is read again line by line, which names the line and gives the same result it always did.
    """
    columnar = _read_beir_corpus_columnar(path)
    return columnar if columnar is not None else _read_beir_corpus_by_line(path)


#: Every character ``str.strip()`` removes (Python's whitespace, which Unicode's White_Space lacks \x1c-\x1f of).
_PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                  "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_HAS_CONTENT = "[^" + "".join(f"\\x{{{ord(c):x}}}" for c in _PY_WHITESPACE) + "]"


def _read_beir_corpus_columnar(path: Path) -> CorpusRead | None:
    """The corpus read by ``pyarrow.json``, or None when the line-by-line reader must decide."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    schema = pa.schema([("_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(str(path), parse_options=options)
        table.validate(full=True)  # the JSON reader does not check that strings are UTF-8; this does
    except (pa.ArrowException, UnicodeDecodeError, OSError, EOFError):  # malformed, a number id, not UTF-8...
        return None
    ids, titles, texts = (table.column(name) for name in ("_id", "title", "text"))
    del table
    if ids.null_count or texts.null_count or len(ids) != _records_in(path):
        return None  # a missing id or text, or two objects on one line
    if titles.null_count:
        titles = pc.fill_null(titles, "")
    has_content = pc.match_substring_regex
    if not pc.all(has_content(ids, _HAS_CONTENT)).as_py():
        return None  # a blank id
    if not pc.all(pc.or_(has_content(texts, _HAS_CONTENT), has_content(titles, _HAS_CONTENT))).as_py():
        return None  # an empty document, set aside with its line number
    columns = [TextColumn.from_arrow(column) for column in (ids, titles, texts)]
    del ids, titles, texts
    pa.default_memory_pool().release_unused()  # the allocator keeps the parsed table's pages otherwise
    try:
        corpus = Corpus(*columns)
    except HardnegError:
        return None  # a duplicate id: the line reader names both lines
    return CorpusRead(corpus, {}, path)


def _records_in(path: Path) -> int:
    """Lines of the file that hold something other than ASCII whitespace (the line reader's records)."""
    count = 0
    with open_bytes(path) as handle:
        for line in handle:
            if line.strip():
                count += 1
    return count


def _read_beir_corpus_by_line(path: Path) -> CorpusRead:
    ids, titles, texts = TextColumnBuilder(), TextColumnBuilder(), TextColumnBuilder()
    line_of: dict[str, int] = {}
    empty: dict[str, int] = {}
    for lineno, obj in iter_json_lines(path):
        doc_id = get_id(obj, path, lineno)
        text = get_str(obj, "text", doc_id, path, lineno, required=True)
        title = get_str(obj, "title", doc_id, path, lineno, required=False)
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
    return CorpusRead(Corpus(ids.finish(), titles.finish(), texts.finish()), empty, path)


def read_text_corpus(path: Path) -> CorpusRead:
    """One passage per line; the document on line ``n`` gets id ``d{n-1}``."""
    ids, texts = TextColumnBuilder(), TextColumnBuilder()
    empty: dict[str, int] = {}
    for lineno, line in read_lines(path):
        text = line.rstrip("\r\n")
        doc_id = f"d{lineno - 1}"
        if not text.strip():
            empty[doc_id] = lineno
            continue
        ids.append(doc_id)
        texts.append(text)
    no_titles = TextColumn.from_texts([""] * len(ids))
    return CorpusRead(Corpus(ids.finish(), no_titles, texts.finish()), empty, path)



def one_of(folder: Path, *names: str) -> Path | None:
    found = [folder / name for name in names if (folder / name).is_file()]
    if len(found) > 1:
        raise HardnegError(
            f"{folder}: both {found[0].name} and {found[1].name} exist; expected one of them. "
            "Remove the one that is stale."
        )
    return found[0] if found else None



def read_corpus_file(corpus: str | Path) -> CorpusRead:
    path = Path(corpus)
    if path.is_dir():
        found = one_of(path, "corpus.jsonl", "corpus.jsonl.gz")
        if found is None:
            raise HardnegError(f"{path}: a corpus folder must hold corpus.jsonl or corpus.jsonl.gz; neither is there.")
        path = found
    if not path.is_file():
        raise HardnegError(f"{path}: no such corpus file; expected a corpus.jsonl(.gz) or a .txt(.gz) file.")
    suffix = base_suffix(path)
    if suffix in JSON_SUFFIXES:
        return read_beir_corpus(path)
    if suffix == ".txt":
        return read_text_corpus(path)
    raise HardnegError(
        f"{path}: unsupported corpus format {suffix or '(no suffix)'!r}; expected .jsonl (with '_id', 'text', "
        "optional 'title') or .txt (one passage per line), optionally gzipped."
    )
