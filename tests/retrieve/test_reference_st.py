"""Dense mining against sentence-transformers' own `mine_hard_negatives` on the real MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg import Miner, SelectionConfig
from hardneg.retrieve.dense import DenseRetriever
from hardneg.retrieve.encoder import SentenceTransformerEncoder


@pytest.fixture(scope="module")
def st_model(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def st_negatives(data, model, **kwargs):
    import sentence_transformers
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    if "range_max" in kwargs and _version(sentence_transformers.__version__) >= (6, 3):
        # From 6.3 it retrieves range_max + positives + 1 candidates, the extra one reserved for the anchor's own
        # text in the corpus, and drops filtered ones before cutting at range_max; with anchors that are not in the
        # corpus its window therefore reaches one non-positive candidate deeper than range_max. hardneg's range_max
        # counts exactly N non-positive candidates, which is ST's window at range_max - 1.
        kwargs = {**kwargs, "range_max": kwargs["range_max"] - 1}
    pairs = Dataset.from_dict(
        {"query": list(data.queries.texts), "positive": [data.corpus.passages[p[0]] for p in data.positives]}
    )
    out = mine_hard_negatives(
        pairs, model, corpus=list(data.corpus.passages), output_format="n-tuple", verbose=False, **kwargs
    )
    row_of = {text: i for i, text in enumerate(data.corpus.passages)}
    query_row = {text: i for i, text in enumerate(data.queries.texts)}
    n = kwargs["num_negatives"]
    return {query_row[r["query"]]: [row_of[r[f"negative_{j + 1}"]] for j in range(n)] for r in out}


@pytest.mark.parametrize(
    "settings",
    [
        {"num_negatives": 3},
        {"num_negatives": 2, "range_min": 2, "range_max": 10},
        {"num_negatives": 2, "relative_margin": 0.05, "range_max": 30},
    ],
    ids=["top3", "window", "percpos"],
)
def test_dense_top_equals_sentence_transformers(tiny_train, st_model, settings):
    config = SelectionConfig(sampling="top", dedupe_texts=False, **settings)
    encoder = SentenceTransformerEncoder(st_model, precision="fp32")
    ours = Miner(DenseRetriever(encoder), config, depth=40, show_progress=False).mine(tiny_train).selection
    theirs = st_negatives(tiny_train, st_model, sampling_strategy="top", **settings)
    assert set(ours.query_rows.tolist()) == set(theirs)
    mine = {q: ours.negatives[i].tolist() for i, q in enumerate(ours.query_rows.tolist())}
    assert mine == theirs


def test_bf16_negatives_overlap_fp32(tiny_train, minilm_path):
    config = SelectionConfig(num_negatives=5)
    runs = {}
    for precision in ("fp32", "bf16"):
        enc = SentenceTransformerEncoder(minilm_path, precision=precision)
        runs[precision] = Miner(DenseRetriever(enc), config, show_progress=False).mine(tiny_train).selection
    a, b = runs["fp32"], runs["bf16"]
    overlap = np.mean([len(set(x) & set(y)) / 5 for x, y in zip(a.negatives.tolist(), b.negatives.tolist())])
    assert overlap >= 0.9
