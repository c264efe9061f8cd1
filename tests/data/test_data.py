"""Loaders and value types of hardneg.data: counts, semantics and every validation error."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hardneg.data import (
    Corpus,
    Queries,
    RetrievalData,
    from_hf_dataset,
    load,
    load_beir,
    load_pairs,
)
from hardneg.errors import HardnegError

TINY = Path(__file__).parents[1] / "fixtures" / "tiny"


# --------------------------------------------------------------------------- helpers


def write_lines(path: Path, records: list[object]) -> Path:
    """One line per record: dicts/lists as JSON, strings verbatim."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8"
    )
    return path


def make_beir(
    root: Path,
    corpus: list[object] | None = None,
    queries: list[object] | None = None,
    qrels: list[object] | None = None,
    *,
    split: str = "train",
    header: bool = True,
) -> Path:
    """A small BEIR folder; qrels rows are (query, doc, score) tuples or raw strings."""
    corpus = corpus if corpus is not None else [
        {"_id": "a", "title": "alpha", "text": "first document"},
        {"_id": "b", "title": "", "text": "second document"},
        {"_id": "c", "text": "third document"},
    ]
    queries = queries if queries is not None else [
        {"_id": "q1", "text": "find first"},
        {"_id": "q2", "text": "find second"},
    ]
    qrels = qrels if qrels is not None else [("q1", "a", 1), ("q2", "b", 1)]
    write_lines(root / "corpus.jsonl", corpus)
    write_lines(root / "queries.jsonl", queries)
    lines = ["query-id\tcorpus-id\tscore"] if header else []
    lines += [r if isinstance(r, str) else "\t".join(str(x) for x in r) for r in qrels]
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "qrels" / f"{split}.tsv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return root


def read_beir_independently(folder: Path, split: str) -> tuple[list[str], dict[str, str], dict[str, dict[str, int]]]:
    """Corpus ids, query texts and positive qrels, read without hardneg."""
    with open(folder / "corpus.jsonl", encoding="utf-8") as fh:
        doc_ids = [str(json.loads(line)["_id"]) for line in fh if line.strip()]
    with open(folder / "queries.jsonl", encoding="utf-8") as fh:
        query_text = {str(o["_id"]): o["text"] for o in map(json.loads, fh)}
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        for query_id, doc_id, score in reader:
            if int(score) > 0:
                qrels.setdefault(query_id, {})[doc_id] = int(score)
    return doc_ids, query_text, qrels


def gzip_copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, gzip.open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


PAIRS = [
    {"query": "how to parse json", "positive": ["json parser library", "a json decoder"]},
    {"query": "image viewer", "positive": "view images quickly"},
    {"query": "how to parse json", "positive": "json parser library"},  # repeated query, repeated positive
    {"query": "video player", "positive": ["plays videos", "view images quickly"]},  # shared positive text
    {"query": "image viewer", "positive": ["an image browser"]},
]


def pairs_rows() -> list[tuple[str, str]]:
    """PAIRS flattened to one positive per row (for CSV/TSV)."""
    rows = []
    for rec in PAIRS:
        cells = rec["positive"] if isinstance(rec["positive"], list) else [rec["positive"]]
        rows.extend((rec["query"], cell) for cell in cells)
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], *, delimiter: str = ",", header=("query", "positive")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def assert_pairs_semantics(data: RetrievalData) -> None:
    """The expected result of PAIRS without a corpus."""
    assert data.queries.ids == ("q0", "q1", "q2")
    assert data.queries.texts == ("how to parse json", "image viewer", "video player")
    # corpus = positive texts deduplicated by exact text, in first-appearance order
    assert data.corpus.ids == ("d0", "d1", "d2", "d3", "d4")
    assert data.corpus.texts == (
        "json parser library",
        "a json decoder",
        "view images quickly",
        "plays videos",
        "an image browser",
    )
    assert data.corpus.titles == ("",) * 5
    assert data.qrels() == {
        "q0": {"d0": 1, "d1": 1},
        "q1": {"d2": 1, "d4": 1},
        "q2": {"d2": 1, "d3": 1},
    }
    for pos, grade in zip(data.positives, data.grades):
        assert pos.dtype == np.int32 and grade.dtype == np.int32
        assert list(pos) == sorted(set(pos.tolist()))


# --------------------------------------------------------------------------- BEIR


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_tiny_fixture_counts_and_positives(split: str) -> None:
    doc_ids, query_text, qrels = read_beir_independently(TINY, split)
    data = load_beir(TINY, split)

    assert len(data.corpus) == len(doc_ids)
    assert data.corpus.ids == tuple(doc_ids)
    assert len(data.queries) == len(qrels)
    assert set(data.queries.ids) == set(qrels)
    assert data.queries.texts == tuple(query_text[q] for q in data.queries.ids)
    for query_id, pos, grade in zip(data.queries.ids, data.positives, data.grades):
        assert {data.corpus.ids[r]: int(g) for r, g in zip(pos, grade)} == qrels[query_id]
    assert data.qrels() == qrels
    assert data.source == f"BEIR folder {TINY} (split {split})"


def test_tiny_fixture_has_enough_queries_per_split() -> None:
    assert 150 <= len(load_beir(TINY).corpus) <= 300
    assert len(load_beir(TINY, "train").queries) >= 100
    assert len(load_beir(TINY, "dev").queries) >= 15
    assert len(load_beir(TINY, "test").queries) >= 15


def test_splits_loaded_in_one_shared_read_share_one_parse(monkeypatch, tmp_path) -> None:
    from hardneg.data import beir, shared_corpus_reads

    parses = []
    real = beir.read_beir_corpus
    monkeypatch.setattr(beir, "read_beir_corpus", lambda path: parses.append(path) or real(path))
    with shared_corpus_reads():
        train, dev = load_beir(TINY, "train"), load_beir(TINY, "dev")
        again = load_beir(TINY, "train")
    assert len(parses) == 1 and train.corpus is dev.corpus is again.corpus
    for shared, split in ((train, "train"), (dev, "dev")):  # the same data as each split parsed alone
        alone = load_beir(TINY, split)
        assert (shared.corpus, shared.queries, shared.grades) == (alone.corpus, alone.queries, alone.grades)
        assert [p.tolist() for p in shared.positives] == [p.tolist() for p in alone.positives]
    assert len(parses) == 3  # outside the block nothing is kept
    copy = tmp_path / "tiny"
    shutil.copytree(TINY, copy)
    with shared_corpus_reads():
        first = load_beir(copy, "train")
        with (copy / "corpus.jsonl").open("a", encoding="utf-8") as fh:  # an edited file is parsed again
            fh.write(json.dumps({"_id": "new-doc", "title": "", "text": "appended"}) + "\n")
        assert len(load_beir(copy, "dev").corpus) == len(first.corpus) + 1


def test_passages_join_title_and_text() -> None:
    data = load_beir(TINY)
    row = 0
    assert data.corpus.titles[row]  # debian-desc: title is the package name
    assert data.corpus.passages[row] == f"{data.corpus.titles[row]} {data.corpus.texts[row]}"
    corpus = Corpus(ids=("x", "y"), titles=("", "T"), texts=("only text", "body"))
    assert corpus.passages == ("only text", "T body")
    assert corpus.row_of == {"x": 0, "y": 1}


def test_queries_follow_qrels_order_and_grades_kept(tmp_path: Path) -> None:
    folder = make_beir(
        tmp_path,
        qrels=[("q2", "c", 2), ("q2", "b", 1), ("q1", "a", 0), ("q1", "c", 3), ("q2", "b", 1)],
    )
    data = load_beir(folder)
    assert data.queries.ids == ("q2", "q1")  # order of first appearance in the qrels
    assert data.positives[0].tolist() == [1, 2]  # sorted rows b, c
    assert data.grades[0].tolist() == [1, 2]
    assert data.qrels() == {"q2": {"b": 1, "c": 2}, "q1": {"c": 3}}


def test_queries_with_only_nonpositive_qrels_are_not_loaded(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "a", 1), ("q2", "b", 0), ("q2", "c", -1)])
    data = load_beir(folder)
    assert data.queries.ids == ("q1",)


def test_missing_qrels_header_is_tolerated(tmp_path: Path) -> None:
    with_header = load_beir(make_beir(tmp_path / "h"))
    without = load_beir(make_beir(tmp_path / "n", header=False))
    assert with_header.fingerprint() == without.fingerprint()


def test_integer_ids_become_strings(tmp_path: Path) -> None:
    folder = make_beir(
        tmp_path,
        corpus=[{"_id": 10, "text": "ten"}, {"_id": 11, "text": "eleven"}],
        queries=[{"_id": 1, "text": "number ten"}],
        qrels=[(1, 10, 1)],
    )
    data = load_beir(folder)
    assert data.corpus.ids == ("10", "11")
    assert data.queries.ids == ("1",)
    assert data.qrels() == {"1": {"10": 1}}


def test_gz_variants_load_identically(tmp_path: Path) -> None:
    gz = tmp_path / "gz"
    gzip_copy(TINY / "corpus.jsonl", gz / "corpus.jsonl.gz")
    gzip_copy(TINY / "queries.jsonl", gz / "queries.jsonl.gz")
    for split in ("train", "dev", "test"):
        gzip_copy(TINY / "qrels" / f"{split}.tsv", gz / "qrels" / f"{split}.tsv.gz")
    for split in ("train", "test"):
        plain, packed = load_beir(TINY, split), load_beir(gz, split)
        assert packed.corpus == plain.corpus
        assert packed.queries == plain.queries
        assert packed.qrels() == plain.qrels()
        assert packed.fingerprint() == plain.fingerprint()
        assert packed.source != plain.source


def test_plain_and_gz_side_by_side_is_an_error(tmp_path: Path) -> None:
    folder = make_beir(tmp_path)
    gzip_copy(folder / "corpus.jsonl", folder / "corpus.jsonl.gz")
    with pytest.raises(HardnegError, match=r"corpus\.jsonl and corpus\.jsonl\.gz"):
        load_beir(folder)


def test_load_dispatches_on_path_kind(tmp_path: Path) -> None:
    assert load(TINY, split="dev").fingerprint() == load_beir(TINY, "dev").fingerprint()
    path = write_lines(tmp_path / "pairs.jsonl", PAIRS)
    assert load(path).fingerprint() == load_pairs(path).fingerprint()
    with pytest.raises(HardnegError, match="no such file or directory"):
        load(tmp_path / "nope")
    with pytest.raises(HardnegError, match="brings its own corpus"):
        load(TINY, corpus=tmp_path / "corpus.jsonl")


def test_bundled_sample_loads() -> None:
    sample = Path(__file__).parents[2] / "data" / "sample"
    data = load_beir(sample)
    assert len(data.corpus) >= 1500 and len(data.queries) >= 1000


# --------------------------------------------------------------------------- empty documents


def test_empty_documents_are_skipped_counted_and_their_qrels_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_beir(
        tmp_path,
        corpus=[
            {"_id": "a", "title": "alpha", "text": "first document"},
            {"_id": "e1", "title": "", "text": "   "},
            {"_id": "b", "text": "second document"},
            {"_id": "e2", "text": ""},
            {"_id": "t", "title": "title only", "text": ""},
        ],
        queries=[{"_id": "q1", "text": "find first"}, {"_id": "q2", "text": "find empty"}],
        qrels=[("q1", "a", 1), ("q1", "e1", 1), ("q2", "e2", 1)],
    )
    with caplog.at_level(logging.WARNING, logger="hardneg.data"):
        data = load_beir(folder)
    assert data.corpus.ids == ("a", "b", "t")  # a title alone is content
    assert data.corpus.passages[2] == "title only"
    assert data.qrels() == {"q1": {"a": 1}}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "skipped 2 document(s)" in message
    assert "'e1'" in message and "line 2" in message
    assert "2 qrel(s)" in message
    assert "1 query left without a positive" in message


# --------------------------------------------------------------------------- BEIR validation


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(HardnegError) as info:
        call(*args, **kwargs)
    return str(info.value)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, corpus=[{"_id": "a", "text": "x"}, '{"_id": "b", "text": "y"'])
    msg = _error(load_beir, folder)
    assert "corpus.jsonl:2" in msg and "malformed JSON" in msg and "JSON Lines" in msg
    assert "column 25" in msg  # where the line ends, not column 1 of a phantom next line


def test_json_line_that_is_not_an_object(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, queries=[{"_id": "q1", "text": "x"}, ["q2", "y"]])
    msg = _error(load_beir, folder)
    assert "queries.jsonl:2" in msg and "got a JSON array" in msg


def test_missing_id_field(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, corpus=[{"_id": "a", "text": "x"}, {"id": "b", "text": "y"}])
    msg = _error(load_beir, folder)
    assert "corpus.jsonl:2" in msg and "'_id'" in msg and "['id', 'text']" in msg


def test_missing_text_field(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, corpus=[{"_id": "a", "text": "x"}, {"_id": "b", "body": "y"}])
    msg = _error(load_beir, folder)
    assert "corpus.jsonl:2" in msg and "'b'" in msg and "'text'" in msg


def test_text_of_wrong_type(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, queries=[{"_id": "q1", "text": 5}])
    msg = _error(load_beir, folder)
    assert "queries.jsonl:1" in msg and "'q1'" in msg and "must be a string" in msg


@pytest.mark.parametrize(
    ("file", "ids", "first_line"),
    [("corpus", ["a", "b", "a"], 1), ("queries", ["q1", "q2", "q2"], 2)],
)
def test_duplicate_id_names_both_lines(tmp_path: Path, file: str, ids: list[str], first_line: int) -> None:
    folder = make_beir(tmp_path, **{file: [{"_id": i, "text": t} for i, t in zip(ids, "xyz")]})
    msg = _error(load_beir, folder)
    assert f"{file}.jsonl:3" in msg and f"'{ids[2]}'" in msg and f"line {first_line}" in msg


def test_qrels_unknown_query(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "a", 1), ("q9", "b", 1)])
    msg = _error(load_beir, folder)
    assert "train.tsv:3" in msg and "'q9'" in msg and "queries.jsonl" in msg


def test_qrels_unknown_document(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "zz", 1)])
    msg = _error(load_beir, folder)
    assert "train.tsv:2" in msg and "'zz'" in msg and "corpus.jsonl" in msg


def test_qrels_wrong_number_of_fields(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "a", 1), "q2 b 1"])
    msg = _error(load_beir, folder)
    assert "train.tsv:3" in msg and "expected 3 tab-separated fields" in msg and "got 1" in msg


def test_qrels_trec_format_gets_a_hint(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "Q0", "a", 1)])
    msg = _error(load_beir, folder)
    assert "train.tsv:2" in msg and "TREC" in msg


def test_qrels_non_integer_score(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "a", 1), ("q2", "b", "high")])
    msg = _error(load_beir, folder)
    assert "train.tsv:3" in msg and "'q2'" in msg and "'high'" in msg and "integer" in msg


def test_qrels_first_line_with_float_score_is_not_taken_for_a_header(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "a", "0.5"), ("q2", "b", 1)], header=False)
    msg = _error(load_beir, folder)
    assert "train.tsv:1" in msg and "'q1'" in msg and "'0.5'" in msg


def test_qrels_conflicting_grades(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "a", 1), ("q1", "a", 2)])
    msg = _error(load_beir, folder)
    assert "train.tsv:3" in msg and "line 2" in msg and "'q1'" in msg


@pytest.mark.parametrize("grades", [(1, 0), (0, 1), (2, -1)])
def test_qrels_pair_judged_relevant_and_not_relevant(tmp_path: Path, grades) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "a", grades[0]), ("q2", "b", 1), ("q1", "a", grades[1])])
    msg = _error(load_beir, folder)
    assert "train.tsv:4" in msg and "line 2" in msg and "'q1'" in msg and "one grade per pair" in msg


def test_empty_query_text(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, queries=[{"_id": "q1", "text": "x"}, {"_id": "q2", "text": "  "}])
    msg = _error(load_beir, folder)
    assert "queries.jsonl:2" in msg and "'q2'" in msg and "empty text" in msg


def test_split_without_positive_queries(tmp_path: Path) -> None:
    folder = make_beir(tmp_path, qrels=[("q1", "a", 0)])
    msg = _error(load_beir, folder)
    assert "train.tsv" in msg and "'train'" in msg and "no query with a positive" in msg


def test_missing_split_lists_available_ones(tmp_path: Path) -> None:
    folder = make_beir(tmp_path)
    make_beir(tmp_path, split="test")
    msg = _error(load_beir, folder, "dev")
    assert "qrels/dev.tsv" in msg and "Available splits: test, train" in msg


def test_missing_corpus_file(tmp_path: Path) -> None:
    folder = make_beir(tmp_path)
    (folder / "corpus.jsonl").unlink()
    msg = _error(load_beir, folder)
    assert "missing corpus.jsonl" in msg


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    folder = make_beir(tmp_path)
    with open(folder / "corpus.jsonl", "ab") as fh:
        fh.write(b'{"_id": "d", "text": "\xff\xfe"}\n')
    msg = _error(load_beir, folder)
    assert "corpus.jsonl:4" in msg and "UTF-8" in msg


def test_corrupt_gzip_is_a_hardneg_error(tmp_path: Path) -> None:
    folder = make_beir(tmp_path)
    (folder / "corpus.jsonl").unlink()
    (folder / "corpus.jsonl.gz").write_bytes(b"not gzip at all")
    msg = _error(load_beir, folder)
    assert "corpus.jsonl.gz" in msg and "gzip" in msg


# --------------------------------------------------------------------------- pairs


def test_pairs_jsonl_merges_repeated_queries_and_dedups_corpus(tmp_path: Path) -> None:
    data = load_pairs(write_lines(tmp_path / "pairs.jsonl", PAIRS))
    assert_pairs_semantics(data)
    assert data.source == f"pairs file {tmp_path / 'pairs.jsonl'}"


def test_pairs_dedup_is_by_exact_text(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "p.jsonl",
        [
            {"query": "a", "positive": ["same text", "Same text", "same text "]},
            {"query": "b", "positive": "same text"},
        ],
    )
    data = load_pairs(path)
    assert data.corpus.texts == ("same text", "Same text", "same text ")
    assert data.positives[1].tolist() == [0]


def test_pairs_csv_tsv_parquet_and_gz_agree_with_jsonl(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    reference = load_pairs(write_lines(tmp_path / "pairs.jsonl", PAIRS)).fingerprint()

    csv_path = write_csv(tmp_path / "pairs.csv", pairs_rows())
    tsv_path = write_csv(tmp_path / "pairs.tsv", pairs_rows(), delimiter="\t")
    gz_path = gzip_copy(tmp_path / "pairs.jsonl", tmp_path / "pairs.jsonl.gz")
    csv_gz_path = gzip_copy(csv_path, tmp_path / "pairs2.csv.gz")
    parquet_path = tmp_path / "pairs.parquet"
    pq.write_table(
        pa.table(
            {
                "query": [r["query"] for r in PAIRS],
                "positive": [r["positive"] if isinstance(r["positive"], list) else [r["positive"]] for r in PAIRS],
            }
        ),
        parquet_path,
    )
    for path in (csv_path, tsv_path, gz_path, csv_gz_path, parquet_path):
        data = load_pairs(path)
        assert_pairs_semantics(data)
        assert data.fingerprint() == reference, path


def test_pairs_csv_with_quoted_multiline_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [("q, with comma", 'line one\nline "two"'), ("q2", "plain")])
    data = load_pairs(path)
    assert data.queries.texts == ("q, with comma", "q2")
    assert data.corpus.texts == ('line one\nline "two"', "plain")


def test_pairs_custom_column_names(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"anchor": "a", "pos": "b", "neg": "c"}])
    data = load_pairs(path, query_column="anchor", positive_column="pos")
    assert data.queries.texts == ("a",) and data.corpus.texts == ("b",)


def test_pairs_with_beir_corpus_matches_passages_and_texts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = write_lines(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "x", "title": "Jpar", "text": "json parser library"},
            {"_id": "d5", "text": "view images quickly"},
            {"_id": "y", "title": "A", "text": "a json decoder"},
            {"_id": "z", "text": "unrelated"},
        ],
    )
    pairs = write_lines(
        tmp_path / "pairs.jsonl",
        [
            {"query": "json", "positive": ["json parser library", "A a json decoder"]},  # text / passage match
            {"query": "images", "positive": ["view images quickly", "not in corpus"]},
            {"query": "other", "positive": "also missing"},
        ],
    )
    with caplog.at_level(logging.INFO, logger="hardneg.data"):
        data = load_pairs(pairs, corpus=corpus)
    assert data.corpus.ids[:4] == ("x", "d5", "y", "z")
    # appended documents get fresh d<n> ids that never collide with existing ids
    assert data.corpus.ids[4:] == ("d4", "d6")
    assert data.corpus.texts[4:] == ("not in corpus", "also missing")
    assert data.qrels() == {"q0": {"x": 1, "y": 1}, "q1": {"d5": 1, "d4": 1}, "q2": {"d6": 1}}
    assert any("2 positive(s)" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert "with corpus" in data.source


def test_pairs_match_the_first_row_like_a_dictionary_would_and_keep_a_mapped_corpus(tmp_path: Path) -> None:
    """Positives are matched by Arrow over the corpus bytes; the rows equal a plain dictionary lookup's."""
    import random

    from hardneg.data.pairs import PairsBuilder
    from hardneg.data.values import DataSource

    rng = random.Random(7)
    words = ["apt", "dpkg", "Apt", "lib", "dev", "é", "\ud800"]
    titles = [rng.choice(["", "", "T", "apt"]) for _ in range(60)]
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 2))) for _ in range(60)]
    ids = [f"d{n}" for n in range(0, 120, 2)]  # the even d<n> are taken: new ids must skip them
    corpus = Corpus(ids, titles, texts)
    cells = [[" ".join(rng.choices(words, k=rng.randint(1, 3))) for _ in range(3)] for _ in range(40)]
    builder = PairsBuilder(corpus, "c")
    for n, row in enumerate(cells):
        builder.add(f"query {n}", row, lambda: "here", "query", "positive")
    data = builder.build(DataSource("pairs", path="p"), "p")

    by_passage, by_text, new = {}, {}, {}  # the reference: first row of each passage, then of each text
    for row, (title, text) in enumerate(zip(titles, texts)):
        by_passage.setdefault(f"{title} {text}" if title else text, row)
        by_text.setdefault(text, row)
    for row in cells:
        for cell in row:
            if cell not in by_passage and cell not in by_text and cell not in new:
                new[cell] = len(texts) + len(new)
    expected = [sorted({by_passage.get(c, by_text.get(c, new.get(c))) for c in row}) for row in cells]
    assert [p.tolist() for p in data.positives] == expected
    assert list(data.corpus.texts[60:]) == list(new) and not set(data.corpus.ids[60:]) & set(ids)
    assert list(data.corpus.ids[60:]) == [f"d{n}" for n in range(60, 200) if f"d{n}" not in ids][: len(new)]
    assert len(new) > 30  # so the new ids run past the taken ones

    mapped = Corpus.open(corpus.save(tmp_path / "corpus"))  # every positive found: the corpus is not copied
    found = PairsBuilder(mapped, "c")
    found.add("q", [texts[3], f"{titles[5]} {texts[5]}".strip()], lambda: "here", "query", "positive")
    kept = found.build(DataSource("pairs", path="p"), "p")
    assert kept.corpus is mapped and kept.corpus.texts.path is not None


def test_pairs_with_txt_corpus(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "passages.txt"
    corpus.write_text("json parser library\n\nplays videos\nnoise\n", encoding="utf-8")
    pairs = write_lines(tmp_path / "p.jsonl", [{"query": "video", "positive": "plays videos"}])
    with caplog.at_level(logging.WARNING, logger="hardneg.data"):
        data = load_pairs(pairs, corpus=corpus)
    assert data.corpus.ids == ("d0", "d2", "d3")  # line n -> d{n-1}; the blank line is skipped
    assert data.qrels() == {"q0": {"d2": 1}}
    assert len(caplog.records) == 1 and "skipped 1 document(s)" in caplog.records[0].getMessage()


def test_pairs_empty_positive_cells_are_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_lines(
        tmp_path / "p.jsonl",
        [
            {"query": "a", "positive": ""},
            {"query": "b", "positive": "bee"},
            {"query": "c", "positive": None},
            {"query": "a", "positive": ["", "ay"]},
            {"query": "d", "positive": []},
        ],
    )
    with caplog.at_level(logging.WARNING, logger="hardneg.data"):
        data = load_pairs(path)
    assert data.queries.texts == ("a", "b")  # a keeps its first-appearance position
    assert data.queries.ids == ("q0", "q1")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "4 empty positive cell(s)" in warnings[0] and "p.jsonl:1" in warnings[0]
    assert "2 queries left without a positive" in warnings[0]


def test_pairs_missing_column_lists_present_ones(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"query": "a", "positive": "b"}, {"question": "c", "answer": "d"}])
    msg = _error(load_pairs, path)
    assert "p.jsonl:2" in msg and "'query'" in msg and "['answer', 'question']" in msg

    csv_path = write_csv(tmp_path / "p.csv", [("a", "b")], header=("anchor", "positive"))
    msg = _error(load_pairs, csv_path)
    assert "p.csv:1" in msg and "'query'" in msg and "['anchor', 'positive']" in msg


def test_pairs_parquet_missing_column(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"anchor": ["a"], "positive": ["b"]}), path)
    msg = _error(load_pairs, path)
    assert "p.parquet" in msg and "'query'" in msg and "['anchor', 'positive']" in msg


def test_pairs_malformed_json_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"query": "a", "positive": "b"}, "{oops"])
    msg = _error(load_pairs, path)
    assert "p.jsonl:2" in msg and "malformed JSON" in msg


def test_pairs_empty_query_text(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"query": "a", "positive": "b"}, {"query": " ", "positive": "c"}])
    msg = _error(load_pairs, path)
    assert "p.jsonl:2" in msg and "empty query text" in msg

    csv_path = write_csv(tmp_path / "p.csv", [("a", "b"), ("", "c")])
    msg = _error(load_pairs, csv_path)
    assert "p.csv:3" in msg and "empty query text" in msg


def test_pairs_wrong_cell_types(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"query": 3, "positive": "b"}])
    assert "p.jsonl:1" in _error(load_pairs, path)
    path = write_lines(tmp_path / "p2.jsonl", [{"query": "a", "positive": {"text": "b"}}])
    assert "p2.jsonl:1" in _error(load_pairs, path)
    path = write_lines(tmp_path / "p3.jsonl", [{"query": "a", "positive": ["b", 4]}])
    assert "p3.jsonl:1" in _error(load_pairs, path)


def test_pairs_csv_row_with_wrong_field_count(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("query,positive\na,b\nc,d,e\n", encoding="utf-8")
    msg = _error(load_pairs, path)
    assert "p.csv:3" in msg and "expected 2 fields" in msg


def test_pairs_all_cells_empty(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"query": "a", "positive": ""}])
    msg = _error(load_pairs, path)
    assert "p.jsonl" in msg and "no query has a non-empty positive" in msg


def test_pairs_unsupported_format_and_json_array(tmp_path: Path) -> None:
    path = tmp_path / "p.xlsx"
    path.write_text("x", encoding="utf-8")
    assert "unsupported pairs format" in _error(load_pairs, path)
    array = tmp_path / "p.json"
    array.write_text(json.dumps(PAIRS, indent=1), encoding="utf-8")
    msg = _error(load_pairs, array)
    assert "p.json:1" in msg and "JSON array" in msg


# --------------------------------------------------------------------------- Hugging Face


def test_from_hf_dataset_matches_pairs_file(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict(
        {
            "query": [r["query"] for r in PAIRS],
            "positive": [r["positive"] if isinstance(r["positive"], list) else [r["positive"]] for r in PAIRS],
        }
    )
    data = from_hf_dataset(dataset)
    assert_pairs_semantics(data)
    assert data.fingerprint() == load_pairs(write_lines(tmp_path / "p.jsonl", PAIRS)).fingerprint()


def test_from_hf_dataset_string_column_corpus_and_errors() -> None:
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict(
        {"anchor": ["q a", "q b", "q a"], "positive": ["pa", "pb", "new"], "negative": ["n", "n", "n"]}
    )
    data = from_hf_dataset(dataset, query_column="anchor", corpus=["pb", "", "pa", "other"])
    assert data.corpus.ids == ("d0", "d2", "d3", "d4")
    assert data.qrels() == {"q0": {"d2": 1, "d4": 1}, "q1": {"d0": 1}}

    msg = _error(from_hf_dataset, dataset)
    assert "'query'" in msg and "['anchor', 'negative', 'positive']" in msg
    msg = _error(from_hf_dataset, datasets.DatasetDict({"train": dataset}), query_column="anchor")
    assert "['train']" in msg and "dataset['train']" in msg
    bad = datasets.Dataset.from_dict({"query": ["a", ""], "positive": ["b", "c"]})
    assert "dataset row 1" in _error(from_hf_dataset, bad)


# --------------------------------------------------------------------------- values


def test_fingerprint_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    first, second = load_beir(TINY), load_beir(TINY)
    assert first.fingerprint() == second.fingerprint()
    assert len(first.fingerprint()) == 64
    assert first.fingerprint() != load_beir(TINY, "dev").fingerprint()

    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    lines = (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    record = json.loads(lines[-1])
    record["text"] += " (changed)"
    lines[-1] = json.dumps(record) + "\n"
    (folder / "corpus.jsonl").write_text("".join(lines), encoding="utf-8")
    assert load_beir(folder).fingerprint() != first.fingerprint()


def test_fingerprint_is_stable_across_processes() -> None:
    code = f"from hardneg.data import load_beir; print(load_beir({str(TINY)!r}).fingerprint())"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == load_beir(TINY).fingerprint()


def test_subset_keeps_corpus_and_selected_queries() -> None:
    data = load_beir(TINY)
    part = data.subset([5, 0, 2])
    assert part.corpus is data.corpus
    assert part.queries.ids == tuple(data.queries.ids[i] for i in (5, 0, 2))
    assert part.queries.texts == tuple(data.queries.texts[i] for i in (5, 0, 2))
    assert [p.tolist() for p in part.positives] == [data.positives[i].tolist() for i in (5, 0, 2)]
    assert part.qrels() == {q: data.qrels()[q] for q in part.queries.ids}
    assert part.fingerprint() != data.fingerprint()
    assert data.subset(np.arange(3)).queries.ids == data.queries.ids[:3]
    assert data.subset(range(3)).queries.ids == data.queries.ids[:3]  # as the CLI calls it
    assert len(data.subset([]).queries) == 0
    with pytest.raises(HardnegError, match="out of range"):
        data.subset([len(data.queries)])
    with pytest.raises(HardnegError, match="more than once"):
        data.subset([1, 1])


def test_value_types_check_their_invariants() -> None:
    corpus = Corpus(ids=("a", "b"), titles=("", ""), texts=("x", "y"))
    queries = Queries(ids=("q",), texts=("t",))
    with pytest.raises(HardnegError, match="one positive list"):
        RetrievalData(corpus, queries, positives=(), grades=())
    with pytest.raises(HardnegError, match="one grade per positive"):
        RetrievalData(corpus, queries, (np.array([0], np.int32),), (np.array([], np.int32),))
    with pytest.raises(HardnegError, match="outside the corpus"):
        RetrievalData(corpus, queries, (np.array([2], np.int32),), (np.array([1], np.int32),))
    with pytest.raises(HardnegError, match="'a' occurs more than once"):
        Corpus(ids=("a", "a"), titles=("", ""), texts=("x", "y"))
    with pytest.raises(HardnegError, match="ids"):
        Corpus(ids=("a",), titles=(), texts=("x",))
    with pytest.raises(HardnegError, match="'q' occurs more than once"):
        Queries(ids=("q", "q"), texts=("t", "u"))
    assert len(corpus) == 2 and len(queries) == 1


def test_retrieval_data_equality_is_identity() -> None:
    first, second = load_beir(TINY), load_beir(TINY)
    assert first == first and first != second  # compare fingerprints for content
    assert first.corpus == second.corpus and first.queries == second.queries


def test_loaded_positive_arrays_are_read_only() -> None:
    data = load_beir(TINY)
    with pytest.raises(ValueError):
        data.positives[0][0] = 3


def test_data_source_is_a_record_that_reloads_the_same_data(tmp_path: Path) -> None:
    from hardneg.data import DataSource, reload

    beir = load_beir(TINY, split="test")
    record = json.loads(json.dumps(beir.origin.to_dict()))
    assert DataSource.from_dict(record) == beir.origin == DataSource("beir", path=str(TINY), split="test")
    assert reload(DataSource.from_dict(record)).fingerprint() == beir.fingerprint()

    write_lines(tmp_path / "p.jsonl", [{"q": "a query", "p": "its positive"}])
    (tmp_path / "c.txt").write_text("one passage\nits positive\n", encoding="utf-8")
    pairs = load_pairs(tmp_path / "p.jsonl", query_column="q", positive_column="p", corpus=tmp_path / "c.txt")
    assert pairs.origin.kind == "pairs" and pairs.origin.corpus == str(tmp_path / "c.txt")
    assert pairs.source == f"pairs file {tmp_path / 'p.jsonl'} with corpus {tmp_path / 'c.txt'}"
    again = reload(DataSource.from_dict(json.loads(json.dumps(pairs.origin.to_dict()))))
    assert again.fingerprint() == pairs.fingerprint()

    cut = beir.subset([0]).subset([0])
    assert cut.origin.subset == (1, len(beir.queries))
    assert cut.source == f"BEIR folder {TINY} (split test) (subset: 1 of {len(beir.queries)} queries)"
    with pytest.raises(HardnegError, match="only a BEIR folder or a pairs file"):
        reload(DataSource("hf", rows=3))
    with pytest.raises(HardnegError, match="Not a data-source record"):
        DataSource.from_dict({"kind": "beir", "folder": "x"})
