"""Metrics: hand-computed values and equality with pytrec_eval used directly."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from hardneg import BM25Retriever
from hardneg.evaluate import Evaluator, run_from_candidates


def test_hand_computed_metrics():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}}
    run = {"q1": {"x": 3.0, "a": 2.0, "y": 1.0}, "q2": {"b": 2.0, "z": 1.5, "c": 1.0}}
    m = Evaluator(qrels).evaluate(run)
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["recall@10"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx((1 / 2 + (1 + 2 / 3) / 2) / 2)


def test_missing_query_counts_as_zero():
    m = Evaluator({"q1": {"a": 1}, "q2": {"b": 1}}).evaluate({"q1": {"a": 1.0}})
    assert m["ndcg@10"] == pytest.approx(0.5) and m["recall@100"] == pytest.approx(0.5)


def test_mrr_at_10_ignores_hits_below_rank_10():
    run = {"q": {f"d{i}": float(100 - i) for i in range(20)}}
    run["q"]["rel"] = 50.0  # rank 11 of 21
    assert Evaluator({"q": {"rel": 1}}).evaluate(run)["mrr@10"] == 0.0


def test_equals_pytrec_eval_on_bm25_run(tiny_dir):
    import pytrec_eval

    from hardneg.data import load_beir

    data = load_beir(tiny_dir, "test")
    cands = BM25Retriever().retrieve(data, 100, show_progress=False)
    run = run_from_candidates(cands, data.corpus.ids)
    ours = Evaluator(data.qrels()).per_query(run)
    ref = pytrec_eval.RelevanceEvaluator(data.qrels(), {"ndcg_cut.10", "recall.10", "recall.100", "map"}).evaluate(run)
    cut10 = {q: dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))[:10]) for q, d in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(data.qrels(), {"recip_rank"}).evaluate(cut10)
    for q in data.qrels():
        assert ours[q]["ndcg@10"] == ref[q]["ndcg_cut_10"]
        assert ours[q]["recall@100"] == ref[q]["recall_100"]
        assert ours[q]["map"] == ref[q]["map"]
        assert ours[q]["mrr@10"] == rr[q]["recip_rank"]


def test_eval_cli_json_prints_only_the_metrics(tiny_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "hardneg.cli", "eval", str(tiny_dir), "--retriever", "bm25", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert set(metrics) == {"ndcg@10", "recall@10", "recall@100", "mrr@10", "map"}
    assert 0.3 < metrics["ndcg@10"] <= 1.0 and np.isfinite(list(metrics.values())).all()


def test_evaluator_survives_pickling_for_worker_processes():
    import pickle

    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1}}
    run = {"q1": {"d2": 2.0, "d1": 1.0}, "q2": {"d3": 1.0}}
    original = Evaluator(qrels)
    copied = pickle.loads(pickle.dumps(original))
    assert copied.evaluate(run) == original.evaluate(run)
    assert copied.evaluate(run)["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)


def test_run_from_candidates_scores_by_rank_or_by_teacher_logit():
    from hardneg.candidates import Candidates
    from hardneg.errors import HardnegError

    doc_ids = np.array([[2, 0, -1], [1, 2, 0]], np.int32)
    scores = np.array([[5.0, 5.0, np.nan], [3.0, 2.0, 1.0]], np.float32)
    teacher = np.array([[-1.0, 4.0, np.nan], [0.5, 2.5, -3.0]], np.float32)
    plain = Candidates(("q1", "q2"), doc_ids, scores, np.zeros((2, 1), np.float32))
    scored = Candidates(("q1", "q2"), doc_ids, scores, np.zeros((2, 1), np.float32),
                        teacher_scores=teacher, teacher_positive_scores=np.zeros((2, 1), np.float32))
    ids = ("a", "b", "c")
    assert run_from_candidates(plain, ids) == {"q1": {"c": 2.0, "a": 1.0}, "q2": {"b": 3.0, "c": 2.0, "a": 1.0}}
    assert run_from_candidates(scored, ids, by="teacher") == {"q1": {"c": -1.0, "a": 4.0},
                                                               "q2": {"b": 0.5, "c": 2.5, "a": -3.0}}
    with pytest.raises(HardnegError, match="no teacher scores"):
        run_from_candidates(plain, ids, by="teacher")
