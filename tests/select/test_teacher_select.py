"""Teacher-score selection: denoise rules held on the output, teacher ordering, exports, report."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hardneg.candidates import EMPTY, Candidates
from hardneg.errors import HardnegError
from hardneg.export import build_rows
from hardneg.mine import Miner
from hardneg.retrieve.bm25 import BM25Retriever
from hardneg.select import SelectionConfig, select_negatives
from hardneg.select.denoise import false_negative_rates, sigmoid, teacher_says_relevant
from hardneg.text import text_keys

TEXTS = [f"document number {i}" for i in range(10)]
KEYS = text_keys(TEXTS)


def with_teacher(doc_ids, scores, positive_scores, teacher, teacher_pos):
    c = Candidates.from_single(
        "dense", tuple(f"q{i}" for i in range(len(doc_ids))), np.asarray(doc_ids, np.int32),
        np.asarray(scores, np.float32), np.asarray(positive_scores, np.float32),
    )
    return dataclasses.replace(
        c, teacher_scores=np.asarray(teacher, np.float32), teacher_positive_scores=np.asarray(teacher_pos, np.float32),
        teacher="t",
    )


CANDS = with_teacher(
    [[0, 1, 2, 3, 4, 5, 6]],
    [[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]],
    [[0.9]],
    # teacher logits: doc 2 above the positive (a false negative), doc 5 strong too
    [[5.0, 1.0, 6.0, -2.0, 0.5, 4.0, -1.0]],
    [[5.0]],
)
POS = (np.array([0]),)


def test_sigmoid_matches_definition_and_is_stable():
    x = np.array([-800.0, -2.0, 0.0, 3.0, 800.0])
    assert sigmoid(x)[1:4] == pytest.approx(1 / (1 + np.exp(-x[1:4])))
    assert sigmoid(x)[0] == 0.0 and sigmoid(x)[-1] == 1.0


@pytest.mark.parametrize(
    "rule, threshold, expected_dropped",
    [
        ("absolute", 3.0, [2, 5]),  # 6.0 and 4.0 > 3
        ("relative", 1.5, [2, 5]),  # > 5.0 - 1.5 = 3.5
        ("relative", 0.0, [2]),  # only what beats the positive
        ("probability", 0.7, [1, 2, 5]),  # sigmoid(1.0) = 0.731 > 0.7; sigmoid(0.5) = 0.62 is not
    ],
)
def test_denoise_hand_computed(rule, threshold, expected_dropped):
    config = SelectionConfig(num_negatives=2, denoise=rule, denoise_threshold=threshold, if_short="keep")
    sel = select_negatives(CANDS, POS, KEYS, config)
    assert [d for d in sel.denoised[0].tolist() if d != EMPTY] == expected_dropped
    assert sel.dropped["denoise"] == len(expected_dropped)
    kept = [d for d in [1, 3, 4, 6] + [2, 5] if d not in expected_dropped]
    assert sel.negatives[0].tolist() == sorted(kept, key=[1, 2, 3, 4, 5, 6].index)[:2]
    assert sel.denoise_rule


def rule_holds(rule, threshold, teacher, positive_ref):
    """The rule, written independently of the implementation: True where a candidate must be dropped."""
    if rule == "absolute":
        return teacher > threshold
    if rule == "relative":
        return teacher > positive_ref - threshold
    return 1.0 / (1.0 + np.exp(-teacher.astype(np.float64))) > threshold


@pytest.mark.parametrize("rule, threshold", [("absolute", 0.0), ("relative", 1.0), ("probability", 0.6)])
@pytest.mark.parametrize("score_source", ["retriever", "teacher"])
def test_denoise_rule_held_on_output(overlap_teacher, tiny_train, rule, threshold, score_source):
    miner = Miner(BM25Retriever(), SelectionConfig(
        num_negatives=3, denoise=rule, denoise_threshold=threshold, if_short="keep", score_source=score_source,
    ), depth=20, show_progress=False, teacher=overlap_teacher)
    result = miner.mine(tiny_train)
    sel, cand = result.selection, result.candidates
    assert sel.dropped["denoise"] > 0
    teacher_of = {}
    for q in range(len(cand.query_ids)):
        for d, t in zip(cand.doc_ids[q].tolist(), cand.teacher_scores[q].tolist()):
            teacher_of[q, d] = t
    for i, q in enumerate(sel.query_rows.tolist()):
        ref = float(np.nanmin(cand.teacher_positive_scores[q]))
        for d, t in zip(sel.negatives[i].tolist(), sel.teacher_scores[i].tolist()):
            if d == EMPTY:
                continue
            assert t == teacher_of[q, d]
            assert not rule_holds(rule, threshold, np.float32(t), ref), (q, d, t)
        for d, t in zip(sel.denoised[i].tolist(), sel.denoised_scores[i].tolist()):
            if d != EMPTY:
                assert rule_holds(rule, threshold, np.float32(t), ref)
                assert d not in sel.negatives[i].tolist()


def test_teacher_score_source_takes_highest_teacher_scores_below_threshold():
    config = SelectionConfig(num_negatives=2, score_source="teacher", denoise="absolute", denoise_threshold=4.5)
    sel = select_negatives(CANDS, POS, KEYS, config)
    # by teacher: 2 (6.0, denoised), 5 (4.0), 1 (1.0), 4 (0.5) ...
    assert sel.negatives.tolist() == [[5, 1]]
    assert sel.scores[0].tolist() == pytest.approx([4.0, 1.0])
    assert sel.positive_scores[0].tolist() == [5.0]


def test_teacher_margins_use_teacher_scores():
    # TopK-MarginPos with teacher scores: keep teacher + 2 <= 5  -> teacher <= 3
    config = SelectionConfig(num_negatives=3, score_source="teacher", absolute_margin=2.0, if_short="keep")
    sel = select_negatives(CANDS, POS, KEYS, config)
    assert sel.negatives.tolist()[0] == [1, 4, 6]
    assert (sel.scores[0] + 2.0 <= 5.0).all()


def test_teacher_selection_without_teacher_scores_says_how_to_fix():
    plain = dataclasses.replace(CANDS, teacher_scores=None, teacher_positive_scores=None, teacher="")
    with pytest.raises(HardnegError, match="--cross-encoder"):
        select_negatives(plain, POS, KEYS, SelectionConfig(denoise="absolute", denoise_threshold=1.0))


def test_probability_threshold_must_be_a_probability():
    with pytest.raises(HardnegError, match=r"\(0, 1\)"):
        SelectionConfig(denoise="probability", denoise_threshold=2.0)


def test_no_teacher_selection_is_unchanged():
    plain = dataclasses.replace(CANDS, teacher_scores=None, teacher_positive_scores=None, teacher="")
    a = select_negatives(plain, POS, KEYS, SelectionConfig(num_negatives=3))
    b = select_negatives(CANDS, POS, KEYS, SelectionConfig(num_negatives=3))
    assert a.negatives.tolist() == b.negatives.tolist() == [[1, 2, 3]]
    assert a.scores.tolist() == b.scores.tolist() and a.dropped == b.dropped


def test_exports_carry_teacher_scores_and_denoised_ids(overlap_teacher, tiny_train):
    config = SelectionConfig(num_negatives=2, denoise="absolute", denoise_threshold=0.0, if_short="pad")
    result = Miner(BM25Retriever(), config, depth=20, show_progress=False, teacher=overlap_teacher).mine(tiny_train)
    sel, data = result.selection, tiny_train
    flag = build_rows(data, sel, "flag")
    ids = build_rows(data, sel, "ids")
    ntuple = build_rows(data, sel, "n-tuple", with_scores=True)
    scorer = overlap_teacher
    for i, (f, r) in enumerate(zip(flag, ids)):
        q = int(sel.query_rows[i])
        expect_neg = scorer.score_pairs([data.queries.texts[q]] * len(f["neg"]), f["neg"])
        padded = sel.sources[i] == 1 << (len(sel.source_names) - 1)
        for got, want, pad in zip(f["neg_scores"], expect_neg.tolist(), padded.tolist()):
            assert got is None if pad else got == pytest.approx(want)
        expect_pos = scorer.score_pairs([data.queries.texts[q]] * len(f["pos"]), f["pos"])
        assert f["pos_scores"] == pytest.approx(expect_pos.tolist())
        assert r["teacher_negative_scores"] == f["neg_scores"]
        assert r["negative_scores"] == [None if np.isnan(s) else pytest.approx(float(s)) for s in sel.scores[i]]
        assert all(s > 0.0 for s in r["denoised_scores"])
        assert not set(r["denoised_ids"]) & set(r["negative_ids"])
    assert ntuple[0]["scores"] == [flag[0]["pos_scores"][0], *flag[0]["neg_scores"]]
    assert any(r["denoised_ids"] for r in ids)


def test_promoted_false_negatives_become_positives_in_exports(overlap_teacher, tiny_train):
    config = SelectionConfig(num_negatives=2, denoise="absolute", denoise_threshold=0.0, promote_denoised=True,
                             if_short="pad")
    result = Miner(BM25Retriever(), config, depth=20, show_progress=False, teacher=overlap_teacher).mine(tiny_train)
    sel = result.selection
    ids = build_rows(tiny_train, sel, "ids")
    flag = build_rows(tiny_train, sel, "flag")
    pairs = build_rows(tiny_train, sel, "labeled-pair")
    promoted_total = 0
    for i, (r, f) in enumerate(zip(ids, flag)):
        q = int(sel.query_rows[i])
        labelled = [tiny_train.corpus.ids[p] for p in tiny_train.positives[q]]
        assert r["positive_ids"] == labelled + r["denoised_ids"]
        assert len(f["pos"]) == len(f["pos_scores"]) == len(r["positive_ids"])
        promoted_total += len(r["denoised_ids"])
    assert promoted_total > 0
    assert sum(p["label"] for p in pairs) == sum(len(r["positive_ids"]) for r in ids)


def test_false_negative_rate_hand_computed():
    # one query, two sources; positives at slot 0
    ranks = {
        "bm25": np.array([[0, 1, 2, -1, 3]], np.int32),
        "dense": np.array([[1, -1, 0, 2, -1]], np.int32),
    }
    is_pos = np.array([[True, False, False, False, False]])
    relevant = np.array([[True, True, False, True, False]])
    rates = false_negative_rates(ranks, is_pos, relevant, top=2)
    # bm25 top-2 non-positive: slots 1 (rank 1), 2 (rank 2) -> 1 relevant of 2
    assert rates["bm25"]["rate"] == 0.5 and rates["bm25"]["candidates"] == 2
    # dense top-2 non-positive: slot 2 (rank 0), slot 3 (rank 2) -> slot 3 relevant: 1 of 2
    assert rates["dense"]["flagged"] == 1 and rates["dense"]["candidates"] == 2


def test_teacher_says_relevant_ignores_nan():
    t = np.array([[np.nan, 3.0]], np.float32)
    assert teacher_says_relevant(t, np.array([np.nan], np.float32), "relative", 0.0).tolist() == [[False, False]]
    assert teacher_says_relevant(t, np.array([1.0], np.float32), "absolute", 2.0).tolist() == [[False, True]]


def test_report_has_false_negative_rate_per_source(overlap_teacher, tiny_train, tmp_path):
    config = SelectionConfig(num_negatives=2, if_short="pad")
    result = Miner(BM25Retriever(), config, depth=20, run_dir=tmp_path, show_progress=False,
                   teacher=overlap_teacher).mine(tiny_train)
    fn = result.report.teacher["false_negative_rate"]["bm25"]
    cand = result.candidates
    # recompute: among bm25's top-10 non-positive candidates, share with sigmoid(teacher) > 0.5
    flagged = looked = 0
    for q, pos in enumerate(tiny_train.positives):
        row = [(d, t) for d, t in zip(cand.doc_ids[q].tolist(), cand.teacher_scores[q].tolist())
               if d != EMPTY and d not in pos.tolist()][:10]
        looked += len(row)
        flagged += sum(t > 0 for _, t in row)
    assert fn["candidates"] == looked and fn["flagged"] == flagged
    assert fn["rate"] == pytest.approx(flagged / looked, abs=1e-6)
    assert "est. false negatives" in result.report.format_table()
