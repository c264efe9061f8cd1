"""Export formats: shapes, hand-checked rows, atomic writes, and real training on the output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hardneg import BM25Retriever, Miner, SelectionConfig
from hardneg.errors import HardnegError
from hardneg.export import FORMATS, build_rows, export


@pytest.fixture(scope="module")
def mined(tiny_train):
    result = Miner(BM25Retriever(), SelectionConfig(num_negatives=2), show_progress=False).mine(tiny_train)
    return tiny_train, result.selection


def test_every_format_has_its_columns(mined):
    data, sel = mined
    m = len(sel.query_rows)
    expected = {
        "triplet": ({"anchor", "positive", "negative"}, 2 * m),
        "n-tuple": ({"anchor", "positive", "negative_1", "negative_2"}, m),
        "labeled-pair": ({"anchor", "document", "label"}, 3 * m),
        "labeled-list": ({"anchor", "documents", "labels"}, m),
        "flag": ({"query", "pos", "neg", "pos_scores", "neg_scores"}, m),
        "ids": ({"query_id", "positive_ids", "negative_ids", "positive_scores", "negative_scores", "negative_sources"}, m),
    }
    assert set(expected) == set(FORMATS)
    for fmt, (columns, n_rows) in expected.items():
        rows = build_rows(data, sel, fmt)
        assert len(rows) == n_rows, fmt  # every tiny query has exactly one positive
        assert set(rows[0]) == columns, fmt


def test_ids_rows_match_the_selection(mined):
    data, sel = mined
    rows = build_rows(data, sel, "ids")
    for i, row in enumerate(rows):
        q = sel.query_rows[i]
        assert row["query_id"] == data.queries.ids[q]
        assert row["positive_ids"] == [data.corpus.ids[p] for p in data.positives[q]]
        assert row["negative_ids"] == [data.corpus.ids[n] for n in sel.negatives[i]]
        assert row["negative_scores"] == pytest.approx(sel.scores[i].tolist())
        assert row["negative_sources"] == ["bm25", "bm25"]
        assert not set(row["negative_ids"]) & set(row["positive_ids"])


def test_flag_rows_hold_texts_and_scores(mined):
    data, sel = mined
    row = build_rows(data, sel, "flag")[0]
    q = sel.query_rows[0]
    assert row["query"] == data.queries.texts[q]
    assert row["pos"] == [data.corpus.passages[data.positives[q][0]]]
    assert row["neg"] == [data.corpus.passages[n] for n in sel.negatives[0]]
    assert row["pos_scores"][0] == pytest.approx(float(sel.positive_scores[0, 0]))


def test_scores_column_for_margin_mse(mined):
    data, sel = mined
    row = build_rows(data, sel, "n-tuple", with_scores=True)[0]
    assert row["scores"] == pytest.approx([float(sel.positive_scores[0, 0]), *sel.scores[0].tolist()])
    pair = build_rows(data, sel, "labeled-pair", with_scores=True)[0]
    assert "score" in pair and "label" not in pair


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_written_files_load_with_datasets(tmp_path, mined, suffix):
    from datasets import load_dataset

    data, sel = mined
    path = export(data, sel, tmp_path / f"train{suffix}", "n-tuple")
    kind = "parquet" if suffix == ".parquet" else "json"
    ds = load_dataset(kind, data_files=str(path), split="train")
    assert ds.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    assert len(ds) == len(sel.query_rows)
    assert ds[0]["anchor"] == data.queries.texts[sel.query_rows[0]]


def test_export_is_byte_identical_across_runs(tmp_path, mined):
    data, sel = mined
    for suffix in (".jsonl", ".jsonl.gz", ".parquet"):
        a = export(data, sel, tmp_path / f"a{suffix}", "flag").read_bytes()
        b = export(data, sel, tmp_path / f"b{suffix}", "flag").read_bytes()
        assert a == b, suffix


def test_failed_write_leaves_no_partial_file(tmp_path, mined, monkeypatch):
    data, sel = mined
    rows = build_rows(data, sel, "triplet")
    rows[5]["anchor"] = float("nan")  # not valid JSON: the writer fails half-way
    from hardneg.export import write_rows

    with pytest.raises(ValueError):
        write_rows(rows, tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_unknown_suffix_and_format_are_clear_errors(tmp_path, mined):
    data, sel = mined
    with pytest.raises(HardnegError, match=r"\.jsonl"):
        export(data, sel, tmp_path / "out.txt", "triplet")
    with pytest.raises(HardnegError, match="choose one of"):
        build_rows(data, sel, "csv")


def test_padded_negatives_export_null_scores(tiny_train):
    config = SelectionConfig(num_negatives=30, range_max=31, if_short="pad")
    result = Miner(BM25Retriever(), config, depth=40, show_progress=False).mine(tiny_train)
    rows = build_rows(tiny_train, result.selection, "ids")
    padded = [r for r in rows if "random" in r["negative_sources"]]
    assert padded, "some tiny queries have fewer than 30 BM25 hits"
    for r in padded:
        for score, source in zip(r["negative_scores"], r["negative_sources"]):
            assert (score is None) == (source == "random")
        assert len(set(r["negative_ids"])) == 30 and not set(r["negative_ids"]) & set(r["positive_ids"])
    json.dumps(rows)  # serialisable, no NaN


def test_exported_file_trains_with_sentence_transformers(tmp_path, mined, minilm_path):
    from datasets import load_dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    data, sel = mined
    path = export(data, sel, tmp_path / "train.jsonl", "n-tuple")
    ds = load_dataset("json", data_files=str(path), split="train").select(range(8))
    model = SentenceTransformer(minilm_path)
    model.max_seq_length = 64
    before = model.encode(["a test sentence"], convert_to_numpy=True)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-4,
        report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, seed=0,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(model))
    trainer.train()
    after = model.encode(["a test sentence"], convert_to_numpy=True)
    assert trainer.state.global_step == 2
    assert np.isfinite(trainer.state.log_history[0]["loss"])
    assert not np.allclose(before, after)


def test_format_table_lists_every_format_and_detects_each_trainable_one_from_its_own_rows() -> None:
    from hardneg.formats import FORMATS as TABLE_FORMATS
    from hardneg.formats import TABLE, TRAINABLE_FORMATS, detect_format

    assert FORMATS == TABLE_FORMATS == ("triplet", "n-tuple", "labeled-pair", "labeled-list", "flag", "ids")
    assert TRAINABLE_FORMATS == ("triplet", "n-tuple", "flag", "ids")
    for name in TRAINABLE_FORMATS:
        assert detect_format(set(TABLE[name].columns) | {"scores"}) == name
    with pytest.raises(HardnegError, match="Cannot train from a file with columns"):
        detect_format({"anchor", "document", "label"})
