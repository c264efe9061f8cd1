"""Selection: hand-computed expectations, and for every filter a check that its rule held."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.candidates import Candidates
from hardneg.errors import HardnegError
from hardneg.select import SelectionConfig, filters, select_negatives
from hardneg.select.sample import gumbel_top, take_top
from hardneg.text import normalize_text, text_keys


def make_candidates(doc_ids, scores, positive_scores):
    doc_ids = np.asarray(doc_ids, dtype=np.int32)
    return Candidates.from_single(
        "dense",
        tuple(f"q{i}" for i in range(len(doc_ids))),
        doc_ids,
        np.asarray(scores, dtype=np.float32),
        np.asarray(positive_scores, dtype=np.float32),
    )


# corpus of 10 distinct texts except doc 9 duplicates doc 0's text and doc 8 duplicates doc 3's
TEXTS = [f"document number {i}" for i in range(8)] + ["Document  number 3", "DOCUMENT number 0"]
KEYS = text_keys(TEXTS)


def test_normalize_text_folds_case_and_space():
    assert normalize_text("  Foo\tBAR\n baz ") == "foo bar baz"
    assert KEYS[9] == KEYS[0] and KEYS[8] == KEYS[3] and len(set(KEYS[:8].tolist())) == 8


def test_normalize_text_equals_the_regex_definition_on_every_whitespace_character():
    import re
    import unicodedata

    def reference(text):  # the definition: NFKC, casefold, runs of \s as one space, stripped
        return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()

    spaces = [chr(c) for c in range(0x110000) if re.fullmatch(r"\s", chr(c))]
    assert spaces == [chr(c) for c in range(0x110000) if chr(c).isspace()]
    samples = [f"{s}a{s}{s}ﬁ B{s}" for s in spaces] + ["", "   ", "Straße\u2003\u2028x", "\x1c\x1fy\x85"]
    assert [normalize_text(t) for t in samples] == [reference(t) for t in samples]


def test_text_keys_accept_a_lone_surrogate():
    keys = text_keys(["lone \ud800 surrogate", "LONE \ud800  surrogate", "lone \ud801 surrogate"])
    assert keys[0] == keys[1] != keys[2]


def test_top_sampling_hand_computed():
    # query 0: positive doc 0; candidates 0(pos) 9(same text as pos) 1 2 3 8(dup of 3) 4
    cands = make_candidates(
        [[0, 9, 1, 2, 3, 8, 4]],
        [[0.9, 0.85, 0.8, 0.7, 0.6, 0.55, 0.5]],
        [[0.9]],
    )
    sel = select_negatives(cands, (np.array([0]),), KEYS, SelectionConfig(num_negatives=3))
    assert sel.negatives.tolist() == [[1, 2, 3]]
    assert sel.scores[0].tolist() == pytest.approx([0.8, 0.7, 0.6])
    assert sel.dropped == {"positive_id": 1, "positive_text": 1, "duplicate_text": 1, "not_sampled": 1, "short_query": 0}
    assert sel.n_candidates == 7
    assert sel.source_labels(0) == ["dense", "dense", "dense"]


def test_rank_window_counts_only_non_positive_candidates():
    cands = make_candidates([[0, 1, 2, 3, 4, 5]], [[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]], [[0.9]])
    config = SelectionConfig(num_negatives=2, range_min=1, range_max=3)
    sel = select_negatives(cands, (np.array([0]),), KEYS, config)
    # non-positive ranks: 1->0, 2->1, 3->2, 4->3 ; window [1,3) keeps docs 2 and 3
    assert sel.negatives.tolist() == [[2, 3]]
    assert sel.dropped["rank_window"] == 3


def test_score_bounds_rule_holds():
    rng = np.random.default_rng(1)
    scores = np.sort(rng.uniform(0, 1, size=(20, 8)), axis=1)[:, ::-1].copy()
    ids = np.tile(np.arange(1, 9), (20, 1))
    cands = make_candidates(ids, scores, np.full((20, 1), 0.99))
    config = SelectionConfig(num_negatives=2, min_score=0.2, max_score=0.7, if_short="keep")
    sel = select_negatives(cands, tuple(np.array([0]) for _ in range(20)), np.arange(10, dtype=np.int64), config)
    kept = sel.scores[sel.negatives >= 0]
    assert len(kept) > 0 and (kept >= 0.2).all() and (kept <= 0.7).all()
    assert sel.dropped["max_score"] == int((scores > 0.7).sum())
    assert sel.dropped["min_score"] == int((scores < 0.2).sum())


def test_margins_hand_computed_with_lowest_positive():
    # two positives scoring 0.8 and 0.6: the reference is 0.6
    cands = make_candidates([[3, 4, 5, 6]], [[0.7, 0.58, 0.55, 0.3]], [[0.8, 0.6]])
    pos = (np.array([0, 1]),)
    absolute = select_negatives(cands, pos, KEYS, SelectionConfig(num_negatives=1, absolute_margin=0.03, if_short="keep"))
    assert absolute.negatives.tolist() == [[5]]  # 0.55 + 0.03 <= 0.6; 0.58 + 0.03 > 0.6
    relative = select_negatives(cands, pos, KEYS, SelectionConfig(num_negatives=3, relative_margin=0.05, if_short="keep"))
    # threshold 0.6 - 0.6 * 0.05 = 0.57: 0.58 and 0.7 dropped
    assert relative.negatives.tolist() == [[5, 6, -1]]
    assert relative.dropped["relative_margin"] == 2


def test_relative_margin_with_negative_positive_score():
    cands = make_candidates([[3, 4]], [[-1.0, -1.2]], [[-1.0]])
    sel = select_negatives(cands, (np.array([0]),), KEYS, SelectionConfig(num_negatives=1, relative_margin=0.1))
    # threshold -1.0 - 1.0 * 0.1 = -1.1: only -1.2 survives
    assert sel.negatives.tolist() == [[4]]


def test_margin_rules_hold_on_random_data():
    rng = np.random.default_rng(7)
    n, k = 50, 20
    scores = -np.sort(-rng.normal(size=(n, k)), axis=1).astype(np.float32)
    pos_scores = rng.normal(size=(n, 2)).astype(np.float32)
    ids = np.tile(np.arange(2, 2 + k), (n, 1))
    keys = np.arange(2 + k, dtype=np.int64)
    positives = tuple(np.array([0, 1]) for _ in range(n))
    cands = make_candidates(ids, scores, pos_scores)
    ref = pos_scores.min(axis=1)
    for config in (
        SelectionConfig(num_negatives=3, absolute_margin=0.1, if_short="keep"),
        SelectionConfig(num_negatives=3, relative_margin=0.2, if_short="keep", sampling="random"),
    ):
        sel = select_negatives(cands, positives, keys, config)
        for i, q in enumerate(sel.query_rows):
            s = sel.scores[i][sel.negatives[i] >= 0]
            if config.absolute_margin is not None:
                assert (s + 0.1 <= ref[q] + 1e-6).all()
            else:
                assert (s <= ref[q] - abs(ref[q]) * 0.2 + 1e-6).all()


def test_reference_positive_score_ignores_padding():
    ref = filters.reference_positive_score(np.array([[0.5, np.nan], [0.2, 0.9], [np.nan, np.nan]], np.float32))
    assert ref[:2].tolist() == pytest.approx([0.5, 0.2]) and np.isnan(ref[2])


def test_margin_without_positive_scores_is_an_error():
    cands = make_candidates([[3, 4]], [[0.5, 0.4]], [[np.nan]])
    with pytest.raises(HardnegError, match="positive score"):
        select_negatives(cands, (np.array([0]),), KEYS, SelectionConfig(num_negatives=1, absolute_margin=0.0))


def test_short_queries_drop_pad_keep():
    cands = make_candidates([[1, 2, -1, -1], [1, 2, 3, 4]], [[0.5, 0.4, np.nan, np.nan], [0.5, 0.4, 0.3, 0.2]], [[0.9], [0.9]])
    positives = (np.array([0]), np.array([0]))
    drop = select_negatives(cands, positives, KEYS, SelectionConfig(num_negatives=3))
    assert drop.query_rows.tolist() == [1] and drop.queries["dropped"] == 1
    keep = select_negatives(cands, positives, KEYS, SelectionConfig(num_negatives=3, if_short="keep"))
    assert keep.negatives.tolist() == [[1, 2, -1], [1, 2, 3]] and keep.queries["short_kept"] == 1
    for seed in range(20):
        pad = select_negatives(cands, positives, KEYS, SelectionConfig(num_negatives=3, if_short="pad", seed=seed))
        row = pad.negatives[0].tolist()
        assert row[:2] == [1, 2] and len(set(row)) == 3
        # padding is never a positive nor shares a text with one (doc 9 has doc 0's text)
        assert row[2] not in (0, 9)
        assert KEYS[row[2]] not in (KEYS[1], KEYS[2])
        assert pad.source_labels(0) == ["dense", "dense", "random"] and np.isnan(pad.scores[0, 2])


def test_take_top_and_gumbel_top():
    alive = np.array([[False, True, True, False, True], [False, False, False, False, True]])
    assert take_top(alive, 2).tolist() == [[1, 2], [4, -1]]
    rng = np.random.default_rng(0)
    chosen = gumbel_top(alive, np.zeros(alive.shape), 2, rng)
    assert chosen[1].tolist() == [4, -1]
    assert set(chosen[0].tolist()) <= {1, 2, 4} and chosen[0, 0] < chosen[0, 1]


def test_random_sampling_is_uniform_and_seeded():
    alive = np.ones((20000, 4), dtype=bool)
    chosen = gumbel_top(alive, np.zeros(alive.shape), 1, np.random.default_rng(3))
    freq = np.bincount(chosen[:, 0], minlength=4) / 20000
    assert np.allclose(freq, 0.25, atol=0.015)
    again = gumbel_top(alive, np.zeros(alive.shape), 1, np.random.default_rng(3))
    assert (chosen == again).all()


def test_simans_prefers_scores_near_the_positive():
    n = 4000
    ids = np.tile(np.arange(1, 5), (n, 1))
    scores = np.tile(np.array([0.95, 0.8, 0.5, 0.1], np.float32), (n, 1))
    cands = make_candidates(ids, scores, np.full((n, 1), 0.8))
    sel = select_negatives(
        cands, tuple(np.array([0]) for _ in range(n)), np.arange(10, dtype=np.int64),
        SelectionConfig(num_negatives=1, sampling="simans", simans_a=20.0),
    )
    freq = np.bincount(sel.negatives[:, 0], minlength=5)[1:] / n
    # p ∝ exp(-20 (s - 0.8)^2): [0.638, 1, 0.165, 0.0001] normalised
    weights = np.exp(-20 * (np.array([0.95, 0.8, 0.5, 0.1]) - 0.8) ** 2)
    assert np.allclose(freq, weights / weights.sum(), atol=0.03)


def test_selection_is_deterministic_per_seed():
    rng = np.random.default_rng(0)
    ids = np.tile(np.arange(1, 31), (100, 1))
    scores = -np.sort(-rng.uniform(size=(100, 30)), axis=1).astype(np.float32)
    cands = make_candidates(ids, scores, np.full((100, 1), 1.0))
    positives = tuple(np.array([0]) for _ in range(100))
    keys = np.arange(40, dtype=np.int64)
    a = select_negatives(cands, positives, keys, SelectionConfig(num_negatives=4, sampling="random", seed=5))
    b = select_negatives(cands, positives, keys, SelectionConfig(num_negatives=4, sampling="random", seed=5))
    c = select_negatives(cands, positives, keys, SelectionConfig(num_negatives=4, sampling="random", seed=6))
    assert (a.negatives == b.negatives).all() and not (a.negatives == c.negatives).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_negatives": 0}, "num_negatives"),
        ({"range_min": -1}, "range_min"),
        ({"num_negatives": 5, "range_min": 2, "range_max": 4}, "rank window"),
        ({"min_score": 0.9, "max_score": 0.1}, "swap"),
        ({"sampling": "best"}, "sampling"),
        ({"relative_margin": 1.5}, "relative_margin"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(HardnegError, match=message):
        SelectionConfig(**kwargs)


def test_short_queries_are_counted_once_and_the_stage_totals_reach_the_output():
    # q0 has enough candidates; q1 is short and padding fills it; q2 is short and padding cannot fill it:
    # every document that is not one of its positives (or a copy of one) is already its candidate
    cands = make_candidates(
        [[1, 2, 3, 4], [1, 2, -1, -1], [7, -1, -1, -1]],
        [[0.5, 0.4, 0.3, 0.2], [0.5, 0.4, np.nan, np.nan], [0.5, np.nan, np.nan, np.nan]],
        [[0.9], [0.9], [0.9]],
    )
    positives = (np.array([0]), np.array([0]), np.array([0, 1, 2, 3, 4, 5, 6]))
    sel = select_negatives(cands, positives, KEYS, SelectionConfig(num_negatives=3, if_short="pad"))
    assert sel.query_rows.tolist() == [0, 1]
    assert sel.queries == {"total": 3, "full": 1, "padded": 1, "short_kept": 0, "dropped": 1}
    assert sel.dropped["not_sampled"] == 1  # q0's fourth candidate
    assert sel.dropped["short_query"] == 1  # q2's one sampled negative never reaches the output
    assert sel.dropped["padding"] == -1  # one random negative added to q1
    assert sel.n_candidates - sum(sel.dropped.values()) == int((sel.negatives != -1).sum()) == 6


def test_every_choice_list_is_spelled_once_and_its_literal_agrees() -> None:
    import typing

    from hardneg import choices

    pairs = [("Sampling", "SAMPLING"), ("IfShort", "IF_SHORT"), ("ScoreSource", "SCORE_SOURCES"),
             ("DenoiseRule", "DENOISE_RULES"), ("RetrieverKind", "RETRIEVERS"), ("Fusion", "FUSIONS"),
             ("IndexKind", "INDEX_KINDS"), ("Precision", "PRECISIONS"), ("ExecutorKind", "EXECUTORS"),
             ("EmbeddingDtype", "EMBEDDING_DTYPES")]
    for literal, values in pairs:
        assert typing.get_args(getattr(choices, literal)) == getattr(choices, values), literal
    with pytest.raises(HardnegError, match="sampling must be one of top, random, simans; got 'best'"):
        SelectionConfig(sampling="best")


def test_stage_table_declares_requirements_and_order() -> None:
    from hardneg.select.stages import FILTERS, STAGES, needs_positive_scores, needs_teacher

    assert STAGES == ("positive_id", "positive_text", "duplicate_text", "rank_window", "max_score", "min_score",
                      "absolute_margin", "relative_margin", "denoise", "not_sampled", "short_query", "padding")
    assert {s.name for s in FILTERS if s.needs_positive_scores} == {"absolute_margin", "relative_margin"}
    assert {s.name for s in FILTERS if s.needs_teacher} == {"denoise"}
    assert not needs_positive_scores(SelectionConfig())
    assert needs_positive_scores(SelectionConfig(relative_margin=0.05))
    assert needs_positive_scores(SelectionConfig(sampling="simans"))
    assert not needs_teacher(SelectionConfig())
    assert needs_teacher(SelectionConfig(denoise="absolute"))
    assert needs_teacher(SelectionConfig(score_source="teacher"))
