"""The training report's pieces: PCA, softmax weights, telling-query picks, skipped candidates, the page."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from hardneg.errors import HardnegError
from hardneg.neighbourhood import pca_2d, pick_telling, skipped_candidates, softmax_weights
from hardneg.train.report import missing_figures, render_training_report, share_line, share_table


def test_pca_puts_collinear_points_on_the_first_axis():
    xy = pca_2d(np.array([[0.0, 0, 0], [1, 1, 0], [2, 2, 0], [3, 3, 0]]))
    assert np.allclose(xy[:, 1], 0)
    assert np.allclose(np.abs(xy[:, 0]), np.array([1.5, 0.5, 0.5, 1.5]) * math.sqrt(2))


def test_softmax_weights_by_hand():
    w = softmax_weights(np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0]]), math.log(3))
    assert w.tolist() == pytest.approx([0.75, 0.25])  # exp(ln 3) : exp(0)


def test_pick_telling_alternates_margin_and_skipped():
    positive = np.array([0.5, 0.5, 0.5, 0.5])
    best_negative = np.array([0.6, 0.1, 0.4, 0.2])  # margins 0.1, -0.4, -0.1, -0.3
    skipped = np.array([0, 3, 0, 1])
    assert pick_telling(positive, best_negative, skipped, 3) == [0, 1, 2]
    assert pick_telling(positive, best_negative, np.zeros(4), 2) == [0, 2]


def test_skipped_candidates_are_those_ranked_above_the_deepest_kept_negative():
    candidates = SimpleNamespace(doc_ids=np.array([[5, 7, 2, 9, 4, -1], [1, 2, 3, -1, -1, -1]]))
    selection = SimpleNamespace(query_rows=np.array([0, 1]), negatives=np.array([[2, 4], [1, 2]]))
    data = SimpleNamespace(positives=[np.array([7]), np.array([8])])
    # query 0: 7 is its positive, 2 and 4 are kept, 5 and 9 were passed over; query 1 kept its top two
    assert skipped_candidates(candidates, selection, data) == {0: [5, 9]}


def test_report_page_is_self_contained_with_every_plot(tmp_path):
    (tmp_path / "train_summary.json").write_text(json.dumps({
        "steps": 20, "examples": 100, "num_negatives": 1, "seconds": 3.0,
        "loss_log": [{"step": 10, "loss": 2.0}, {"step": 20, "loss": 1.5}],
        "history": [{"kind": "start", "step": 0, "dev_ndcg@10": 0.5},
                    {"kind": "refresh", "step": 10, "dev_ndcg@10": 0.55, "staleness": 0.4, "negatives_changed": 0.3},
                    {"kind": "end", "step": 20, "dev_ndcg@10": 0.6}]}))
    shares = [{"step": 1, "shares": {"hard_1": 0.6, "padding": 0.0, "in_batch": 0.4}, "positive_prob": 0.2},
              {"step": 11, "after_refresh": True, "shares": {"hard_1": 0.5, "padding": 0.0, "in_batch": 0.5},
               "positive_prob": 0.5},
              {"step": 20, "shares": {"hard_1": 0.3, "padding": 0.0, "in_batch": 0.7}, "positive_prob": 0.7}]
    (tmp_path / "gradient_shares.jsonl").write_text("".join(json.dumps(e) + "\n" for e in shares))
    point = {"kind": "hard negative", "text": "<b>n</b>", "x": 1.0, "y": 0.0, "weight": 0.4, "score": 0.8}
    (tmp_path / "report_map.json").write_text(json.dumps([{"query": "q", "reason": "r", "x": 0.0, "y": 0.0,
                                                           "points": [point, {**point, "kind": "positive"}]}]))
    page = render_training_report(tmp_path).read_text()
    assert page.count("data:image/png;base64,") == 5
    # three measured steps: a window of one each at start and end
    assert "<td>start (step 1)</td><td>0.600</td>" in page and "<td>end (step 20)</td><td>0.300</td>" in page
    assert "&lt;b&gt;n&lt;/b&gt;" in page and "src='http" not in page
    assert share_table(shares)[1][1]["p(positive)"] == 0.7
    # four or more: the mean of up to three at each end
    more = shares + [{"step": 30, "shares": {"hard_1": 0.1, "padding": 0.0, "in_batch": 0.9}, "positive_prob": 0.9}]
    (start, first), (end, last) = share_table(more)
    assert start == "start (steps 1-11)" and first["hard_1"] == pytest.approx(0.55)
    assert end == "end (steps 20-30)" and last["hard_1"] == pytest.approx(0.2) and last["p(positive)"] == 0.8
    assert share_line(more) == ("gradient  start (steps 1-11): hard 55%, in-batch 45%, padding 0%; "
                                "end (steps 20-30): hard 20%, in-batch 80%, padding 0%")


def test_a_figure_with_nothing_to_draw_says_why(tmp_path):
    (tmp_path / "train_summary.json").write_text(json.dumps({
        "steps": 4, "examples": 100, "num_negatives": 1, "seconds": 3.0, "config": {"logging_steps": 10},
        "loss_log": [], "history": []}))
    page = render_training_report(tmp_path).read_text()
    assert "data:image/png;base64," not in page
    assert "<h2>Not drawn</h2>" in page
    for line in ("Training loss: it is logged every 10 steps and this run took 4.",
                 "Dev metrics: no dev split was evaluated", "Refreshes: this run had no ANCE refresh",
                 "Gradient shares: none were logged", "Neighbourhoods of telling queries:"):
        assert line in page
    # every figure drawn: no such section (the page above with all five plots)
    assert missing_figures({"loss_log": [1], "history": [{"kind": "refresh", "dev_ndcg@10": 0.5}]}, [1], [1]) == []


def test_report_of_a_folder_without_a_run_names_the_fix(tmp_path):
    with pytest.raises(HardnegError, match="--output folder"):
        render_training_report(tmp_path)


def test_mining_report_maps_telling_queries_from_the_cached_embeddings_without_encoding(tmp_path, tiny_train,
                                                                                       fake_encoder):
    from hardneg import Miner, SelectionConfig
    from hardneg.report_html import render_html
    from hardneg.retrieve.dense import DenseRetriever

    Miner(DenseRetriever(fake_encoder), SelectionConfig(num_negatives=2, relative_margin=0.05), run_dir=tmp_path,
          show_progress=False).mine(tiny_train)
    calls = fake_encoder.calls
    # a selection-only rerun: the map comes from the saved embeddings, nothing is encoded
    Miner(DenseRetriever(fake_encoder), SelectionConfig(num_negatives=2, relative_margin=0.1), run_dir=tmp_path,
          show_progress=False).mine(tiny_train)
    assert fake_encoder.calls == calls
    maps = json.loads((tmp_path / "report_map.json").read_text())
    assert len(maps) == 3
    for m in maps:
        kinds = [p["kind"] for p in m["points"]]
        assert kinds[0] == "positive" and kinds.count("hard negative") + kinds.count("padding") == 2
        assert sum(p["weight"] for p in m["points"]) == pytest.approx(1.0)
    assert "Neighbourhoods of telling queries" in render_html(tmp_path).read_text()


def test_bm25_runs_have_no_map(tmp_path, tiny_train):
    from hardneg import BM25Retriever, Miner, SelectionConfig

    Miner(BM25Retriever(), SelectionConfig(num_negatives=2), run_dir=tmp_path, show_progress=False).mine(tiny_train)
    assert not (tmp_path / "report_map.json").exists()


def test_neighbourhood_shows_each_text_once_even_when_a_skipped_candidate_became_a_negative():
    from hardneg.neighbourhood import neighbourhoods
    from hardneg.text import text_keys
    from hardneg.train.pool import NegativePool

    n = 6
    pool = NegativePool([f"q{i}" for i in range(n)], [f"p{i}" for i in range(n)], [[f"n{i}", "shared"] for i in range(n)],
                        np.arange(n), [text_keys([f"p{i}"]) for i in range(n)], np.arange(n))

    def encode(texts):
        rng = [np.random.default_rng(abs(hash(t)) % 2**32) for t in texts]
        return np.stack([r.normal(size=8) for r in rng])

    # "n0" and "shared" were skipped at mining time but are query 0's negatives now
    skipped = {0: ["n0", "shared", "s0", "s0"]}
    maps = neighbourhoods((encode, encode), pool, skipped=skipped, padding={0: {"shared"}}, n=n, sample=n, others=3)
    for m in maps:
        texts = [p["text"] for p in m["points"]]
        assert len(texts) == len(set(texts))
    (q0,) = [m for m in maps if m["query"] == "q0"]
    kinds = {p["text"]: p["kind"] for p in q0["points"]}
    assert kinds["n0"] == "hard negative" and kinds["shared"] == "padding" and kinds["s0"] == "skipped candidate"
    assert sum(k == "in-batch" for k in kinds.values()) == 3


def test_a_maps_list_always_shows_its_positive_and_hard_negatives():
    """The headline of a telling query talks about its positive and hard negatives: the list must show them even
    when six in-batch documents weigh more (it used to show the six heaviest only)."""
    from hardneg.neighbourhood import listed_points, map_texts

    def point(kind, weight):
        return {"kind": kind, "text": f"{kind} {weight}", "x": 0.0, "y": 0.0, "weight": weight, "score": 0.5}

    points = ([point("in-batch", 0.9 - i / 100) for i in range(8)] + [point("positive", 0.01)]
              + [point("hard negative", w) for w in (0.02, 0.05)] + [point("padding", 0.5)])
    listed = listed_points(points)
    assert [(p["kind"], p["weight"]) for p in listed] == [
        ("hard negative", 0.05), ("hard negative", 0.02), ("positive", 0.01),
        ("in-batch", 0.9), ("in-batch", 0.89), ("in-batch", 0.88)]
    page = map_texts([{"query": "q", "reason": "a hard negative outscores the positive", "points": points}])
    assert "positive</b> weight 0.010" in page and page.count("<li>") == 6
