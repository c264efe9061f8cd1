"""TextColumn: texts as one UTF-8 buffer with offsets, in memory or memory-mapped; the Corpus built on it."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest

from hardneg.data import Corpus, load_beir
from hardneg.data.text_column import TextColumn, TextColumnBuilder
from hardneg.errors import HardnegError

TEXTS = ["", "plain ascii", "café – ünïcode", "😀 astral", "lone \ud800 surrogate", "x" * 5000, ""]


def test_round_trip_in_memory_and_through_a_file(tmp_path):
    column = TextColumn.from_texts(TEXTS)
    assert len(column) == len(TEXTS)
    assert [column[i] for i in range(len(TEXTS))] == TEXTS
    assert list(column) == TEXTS
    assert column[-1] == TEXTS[-1] and column[-3] == TEXTS[-3]
    saved = TextColumn.open(column.save(tmp_path / "t.arrow"))
    assert saved.path == tmp_path / "t.arrow" and column.path is None
    assert list(saved) == TEXTS
    assert saved == column and column == TEXTS and TEXTS == column and tuple(TEXTS) == saved


def test_iteration_crosses_its_internal_chunks():
    texts = [f"text {i} " + "é" * (i % 7) for i in range(10_000)]
    assert list(TextColumn.from_texts(texts)) == texts


def test_slices_share_the_buffer_and_behave_like_tuple_slices(tmp_path):
    column = TextColumn.from_texts(TEXTS)
    for cut in (slice(1, 4), slice(None, 2), slice(3, None), slice(5, 2), slice(-3, -1), slice(0, 7, 2),
                slice(None, None, -1)):
        assert list(column[cut]) == TEXTS[cut], cut
    middle = column[2:5]
    assert middle[0] == TEXTS[2] and len(middle) == 3
    assert list(TextColumn.open(middle.save(tmp_path / "m.arrow"))) == TEXTS[2:5]  # a slice saves only itself
    assert pickle.loads(pickle.dumps(middle)) == TEXTS[2:5]


def test_bad_indices_raise_like_a_sequence():
    column = TextColumn.from_texts(["a", "b"])
    with pytest.raises(IndexError):
        column[2]
    with pytest.raises(IndexError):
        column[-3]
    with pytest.raises(TypeError, match="integers or slices"):
        column["a"]


def test_equality_and_emptiness():
    assert TextColumn.from_texts([]) == [] and len(TextColumn.from_texts([])) == 0
    assert TextColumn.from_texts(["a", "b"]) != ["a", "c"]
    assert TextColumn.from_texts(["ab", ""]) != TextColumn.from_texts(["a", "b"])  # same bytes, other rows
    assert TextColumn.from_texts(["", ""]).all_empty() and not TextColumn.from_texts(["", "a"]).all_empty()
    assert TextColumn.from_texts(["a"]) != "a"


def test_nbytes_counts_utf8_bytes_and_offsets():
    column = TextColumn.from_texts(["ab", "é"])  # 2 + 2 UTF-8 bytes, 3 offsets of 8 bytes
    assert column.nbytes == 4 + 3 * 8


def test_builder_appends_and_resets():
    builder = TextColumnBuilder()
    builder.extend(["a", "bé"])
    builder.append("c")
    assert len(builder) == 3
    assert list(builder.finish()) == ["a", "bé", "c"]
    assert len(builder) == 0 and list(builder.finish()) == []


def test_the_file_is_a_plain_arrow_table(tmp_path):
    TextColumn.from_texts(["a", "bé"]).save(tmp_path / "t.arrow")
    with pa.ipc.open_file(pa.memory_map(str(tmp_path / "t.arrow"))) as reader:
        table = reader.read_all()
    assert table.column("text").to_pylist() == [b"a", "bé".encode()]


def test_a_failed_save_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    target = TextColumn.from_texts(["old"]).save(tmp_path / "t.arrow")
    mapped = TextColumn.open(target)  # a reader holding the old file keeps reading it

    def broken_writer(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pa.ipc, "new_file", broken_writer)
    with pytest.raises(OSError, match="disk full"):
        TextColumn.from_texts(["new"]).save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.arrow"]
    assert list(TextColumn.open(target)) == ["old"] == list(mapped)


def test_opening_something_else_names_the_file(tmp_path):
    with pytest.raises(HardnegError, match="no such text column file"):
        TextColumn.open(tmp_path / "missing.arrow")
    (tmp_path / "junk.arrow").write_bytes(b"not arrow")
    with pytest.raises(HardnegError, match="junk.arrow: not a text column file"):
        TextColumn.open(tmp_path / "junk.arrow")
    other = pa.table({"id": pa.array([1, 2])})
    with pa.OSFile(str(tmp_path / "other.arrow"), "wb") as sink, pa.ipc.new_file(sink, other.schema) as writer:
        writer.write_table(other)
    with pytest.raises(HardnegError, match="expected one large_binary column 'text'"):
        TextColumn.open(tmp_path / "other.arrow")


def test_corpus_converts_sequences_and_refuses_non_strings():
    corpus = Corpus(("d1", "d2"), ["", "T"], ("one", "two"))
    assert isinstance(corpus.ids, TextColumn) and corpus.ids == ("d1", "d2")
    assert corpus.passages == ["one", "T two"]
    with pytest.raises(HardnegError, match="Corpus texts: row 1 is a int"):
        Corpus(("a", "b"), ("", ""), ("x", 3))


def test_passages_are_the_texts_themselves_without_titles():
    corpus = Corpus(("a", "b"), ("", ""), ("x", "y"))
    assert corpus.passages is corpus.texts


def test_a_saved_corpus_opens_memory_mapped_and_equal(tmp_path):
    data = load_beir("tests/fixtures/tiny")
    folder = data.corpus.save(tmp_path / "corpus")
    opened = Corpus.open(folder)
    assert all(getattr(opened, name).path is not None for name in ("ids", "titles", "texts"))
    assert opened == data.corpus
    assert list(opened.passages) == list(data.corpus.passages)
    assert opened.row_of == data.corpus.row_of
    with pytest.raises(HardnegError, match="titles.arrow: no such text column file"):
        (folder / "titles.arrow").unlink()
        Corpus.open(folder)


def test_a_mapped_column_pickles_as_its_path_and_a_slice_as_its_bytes(tmp_path):
    column = TextColumn.open(TextColumn.from_texts(["x" * 1000] * 50).save(tmp_path / "t.arrow"))
    whole = pickle.dumps(column)
    assert len(whole) < 500 and pickle.loads(whole).path == column.path and pickle.loads(whole) == column
    part = pickle.dumps(column[:2])
    assert 2000 < len(part) < 3000 and pickle.loads(part) == ["x" * 1000] * 2 and pickle.loads(part).path is None
