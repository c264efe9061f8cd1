"""bench/failure_analysis.py: the failure breakdown on a hand-built score matrix."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "failure_analysis", Path(__file__).resolve().parents[1] / "bench" / "failure_analysis.py")
failure_analysis = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(failure_analysis)


def test_word_jaccard():
    assert failure_analysis.word_jaccard("Foo bar, baz", "baz foo qux") == pytest.approx(2 / 4)
    assert failure_analysis.word_jaccard("", "") == 0.0


def test_misses_are_split_into_near_duplicates_and_the_rest():
    texts = ["the shared library of foo", "the shared library of foo", "a game about ships", "unrelated words"]
    scores = np.array([
        [0.9, 0.1, 0.0, 0.0],  # positive 0 first: no miss
        [0.8, 0.7, 0.1, 0.0],  # positive 1 second, beaten by its twin (doc 0): near-duplicate miss
        [0.1, 0.2, 0.3, 0.9],  # positive 2 second, beaten by unrelated doc 3: other miss
    ])
    r = failure_analysis.analyse(scores, [0, 1, 2], texts)
    lost_rank2 = 1 - 1 / math.log2(3)
    assert r["misses"] == 2 and r["near_duplicate_misses"] == 1 and r["first"] == pytest.approx(1 / 3)
    assert r["ndcg@10"] == pytest.approx((1 + 2 / math.log2(3)) / 3)
    assert r["ndcg_lost"] == pytest.approx(2 * lost_rank2 / 3)
    assert r["ndcg_lost_near_duplicate"] == pytest.approx(lost_rank2 / 3)
