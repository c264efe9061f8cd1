"""bench/scale.py: its fake encoder, its growth exponents and one tiny configuration end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # as when the script runs: it imports its neighbours (peak_rss, bm25_memory)
_spec = importlib.util.spec_from_file_location("scale", BENCH / "scale.py")
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)


def test_fake_encoder_gives_one_unit_vector_per_text_whatever_the_batch():
    enc = scale.FakeEncoder(dim=16)
    both = enc.encode_documents(["alpha", "beta"])
    assert both.shape == (2, 16) and both.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(enc.encode_queries(["beta"])[0], both[1])
    assert abs(float(both[0] @ both[1])) < 0.9  # different texts, different directions


def test_growth_is_the_log_log_slope_per_stage():
    rows = [{"retriever": "bm25", "queries": 10, "docs": d, "seconds": {"index": 2e-4 * d, "search": 1e-6 * d * d}}
            for d in (1_000, 10_000, 100_000)]
    slopes = scale.growth(rows)
    assert slopes["bm25 q=10 index"] == pytest.approx(1.0)
    assert slopes["bm25 q=10 search"] == pytest.approx(2.0)
    assert "bm25 q=10 select" not in slopes  # no seconds for it: no slope


@pytest.mark.parametrize("retriever", ["bm25", "exact"])
def test_one_tiny_configuration_runs_every_stage(tmp_path, monkeypatch, retriever):
    monkeypatch.setattr(scale, "OUT", tmp_path)
    folder = scale.make_data(300, 40)
    assert len((folder / "queries.jsonl").read_text().splitlines()) == 40
    result = scale.run_one(retriever, folder, tmp_path / "run")
    # exact search builds no index (it scans memory-mapped document shards); BM25 encodes nothing
    expected = {"load", "search", "select", "export"} | ({"encode"} if retriever == "exact" else {"index"})
    assert set(result["seconds"]) == expected
    assert result["rows"] > 0
    first = json.loads((tmp_path / "run" / "triplets.jsonl").read_text().splitlines()[0])
    assert set(first) == {"anchor", "positive", "negative"}
    assert result["search_quality"] == {}  # exact search and BM25 have no recall to report


def test_an_approximate_index_row_keeps_its_recall_against_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "OUT", tmp_path)
    folder = scale.make_data(300, 40)
    result = scale.run_one("ivf", folder, tmp_path / "run")
    quality = result["search_quality"]
    assert (quality["index"], quality["queries"]) == ("ivf", 40)  # every query sampled: fewer than 1,000
    assert 0 < quality["recall_vs_exact"] <= 1


def test_embedding_dtype_reaches_the_stored_embeddings(tmp_path, monkeypatch):
    monkeypatch.setattr(scale, "OUT", tmp_path)
    folder = scale.make_data(300, 40)
    scale.run_one("exact", folder, tmp_path / "run", "float16")
    stored = sorted((tmp_path / "run" / "embeddings").glob("*.npy"))
    assert len(stored) == 2  # documents and queries
    assert {np.load(p, mmap_mode="r").dtype for p in stored} == {np.dtype(np.float16)}
