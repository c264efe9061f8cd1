"""corpus.jsonl: the column-wise Arrow reader gives exactly what the line-by-line reader gives, or declines."""

from __future__ import annotations

import gzip
import json

import pytest

from hardneg.data import readers
from hardneg.data.readers import _read_beir_corpus_by_line, _read_beir_corpus_columnar, read_beir_corpus
from hardneg.errors import HardnegError

CLEAN = [
    '{"_id": "d1", "title": "Apt", "text": "package manager"}',
    '{"_id": "d2", "text": "no title here"}',
    '{"_id": "d3", "title": null, "text": "null title"}',
    '{"_id": "d4", "title": "", "text": "caf\\u00e9 \\ud83d\\ude00 pair", "extra": {"nested": [1, 2]}}',
    '{"_id": "d5", "title": "only a title", "text": "   "}',
    '{"_id": "d6", "title": "x", "text": "a\\u0000b", "text2": 3}',
]

# Each of these needs the line reader: it errors with the line, or sets a document aside with its line,
# or reads a value the Arrow schema cannot (an integer id, a lone surrogate).
DECLINED = {
    "integer id": ['{"_id": 7, "text": "a"}'],
    "empty document": ['{"_id": "a", "text": "a"}', '{"_id": "b", "title": " ", "text": "\\t"}'],
    "empty under python's strip only": ['{"_id": "a", "text": "a"}', '{"_id": "b", "text": "\\u001c"}'],
    "blank id": ['{"_id": " ", "text": "a"}'],
    "duplicate id": ['{"_id": "a", "text": "a"}', '{"_id": "a", "text": "b"}'],
    "missing text": ['{"_id": "a", "title": "t"}'],
    "null text": ['{"_id": "a", "text": null}'],
    "text not a string": ['{"_id": "a", "text": 5}'],
    "two records on a line": ['{"_id": "a", "text": "a"} {"_id": "b", "text": "b"}'],
    "malformed": ['{"_id": "a", "text": "a"', '{"_id": "b", "text": "b"}'],
    "lone surrogate": ['{"_id": "a", "text": "x\\ud800y"}'],
    "array": ['[1, 2]'],
    "repeated key": ['{"_id": "a", "text": "a", "text": "b"}'],
}


def _write(path, lines, *, gz=False, blank_lines=False, bom=False, crlf=False):
    end = "\r\n" if crlf else "\n"
    body = (end + "  " + end if blank_lines else end).join(lines) + end
    raw = (b"\xef\xbb\xbf" if bom else b"") + body.encode()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def _same(path):
    """Both readers' results (or errors) for ``path``."""
    try:
        expected = _read_beir_corpus_by_line(path)
    except HardnegError as exc:
        with pytest.raises(HardnegError) as got:
            read_beir_corpus(path)
        assert str(got.value) == str(exc)
        return None
    read = read_beir_corpus(path)
    assert read.corpus == expected.corpus
    assert read.empty_ids == expected.empty_ids
    return read


@pytest.mark.parametrize("variant", [{}, {"gz": True}, {"blank_lines": True}, {"bom": True}, {"crlf": True}])
def test_a_clean_file_is_read_column_wise_and_equal(tmp_path, variant):
    path = _write(tmp_path / "corpus.jsonl", CLEAN, **variant)
    assert _read_beir_corpus_columnar(path) is not None
    read = _same(path)
    assert list(read.corpus.ids) == ["d1", "d2", "d3", "d4", "d5", "d6"]
    assert list(read.corpus.titles) == ["Apt", "", "", "", "only a title", "x"]
    assert read.corpus.texts[3] == "café 😀 pair" and read.corpus.texts[5] == "a\x00b"


@pytest.mark.parametrize("case", sorted(DECLINED))
def test_what_needs_a_closer_look_goes_to_the_line_reader(tmp_path, case):
    path = _write(tmp_path / "corpus.jsonl", DECLINED[case])
    assert _read_beir_corpus_columnar(path) is None
    _same(path)


def test_declined_files_keep_their_line_numbered_messages(tmp_path):
    path = _write(tmp_path / "corpus.jsonl", DECLINED["duplicate id"])
    with pytest.raises(HardnegError, match=r"corpus.jsonl:2: duplicate document id 'a', first defined at line 1"):
        read_beir_corpus(path)
    path = _write(tmp_path / "corpus.jsonl", DECLINED["empty document"])
    assert read_beir_corpus(path).empty_ids == {"b": 2}
    path = _write(tmp_path / "corpus.jsonl", DECLINED["integer id"])
    assert list(read_beir_corpus(path).corpus.ids) == ["7"]


def test_not_utf8_and_empty_files(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "a\xff"}\n')
    assert _read_beir_corpus_columnar(path) is None
    with pytest.raises(HardnegError, match="not valid UTF-8"):
        read_beir_corpus(path)
    path.write_bytes(b"")
    assert len(read_beir_corpus(path).corpus) == 0


def test_the_fixture_corpus_takes_the_fast_path(monkeypatch):
    def refuse(path):
        raise AssertionError("the line reader ran")

    monkeypatch.setattr(readers, "_read_beir_corpus_by_line", refuse)
    read = read_beir_corpus(readers.Path("tests/fixtures/tiny/corpus.jsonl"))
    first = json.loads(readers.Path("tests/fixtures/tiny/corpus.jsonl").read_text().splitlines()[0])
    assert read.corpus.ids[0] == first["_id"] and read.corpus.texts[0] == first["text"]


def test_the_whitespace_set_is_pythons():
    assert readers._PY_WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


def test_an_empty_column_saves_and_opens(tmp_path):
    from hardneg.data.text_column import TextColumn

    assert len(TextColumn.open(TextColumn.from_texts([]).save(tmp_path / "e.arrow"))) == 0
