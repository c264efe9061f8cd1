"""Rescoring: equal to per-pair CrossEncoder.predict, cached under the teacher key, resumable."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.candidates import EMPTY, Candidates
from hardneg.errors import HardnegError
from hardneg.mine import Miner
from hardneg.retrieve.bm25 import BM25Retriever
from hardneg.select import SelectionConfig
from hardneg.store import RunDir
from hardneg.teacher.rescore import candidate_pairs, rescore_candidates


class OverlapScorer:
    """Deterministic fake teacher; optionally dies after ``fail_after`` calls (a simulated kill)."""

    def __init__(self, fail_after: int | None = None, salt: str = "") -> None:
        self.fail_after, self.salt, self.calls, self.pairs = fail_after, salt, 0, 0

    def key(self) -> str:
        return "overlap" + self.salt

    def score_pairs(self, queries, documents, *, show_progress=True):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        self.pairs += len(queries)
        return np.array(
            [len(set(q.split()) & set(d.split())) + len(d) % 7 / 10 + len(self.salt) for q, d in zip(queries, documents)],
            dtype=np.float32,
        )


@pytest.fixture(scope="module")
def bm25_candidates(tiny_train):
    return BM25Retriever().retrieve(tiny_train, 12, show_progress=False)


def test_pairs_cover_every_candidate_and_positive_once(tiny_train, bm25_candidates):
    q, d = candidate_pairs(bm25_candidates, tiny_train.positives)
    expected = set()
    for row in range(len(tiny_train.queries)):
        expected |= {(row, x) for x in bm25_candidates.doc_ids[row].tolist() if x != EMPTY}
        expected |= {(row, int(x)) for x in tiny_train.positives[row]}
    assert set(zip(q.tolist(), d.tolist())) == expected and len(q) == len(expected)


@pytest.mark.slow
def test_rescoring_equals_per_pair_predict(tiny_dir, minilm_path):
    import torch

    from hardneg.data import load_beir
    from hardneg.teacher.scorer import CrossEncoderScorer, load_cross_encoder

    data = load_beir(tiny_dir, "dev")
    cands = BM25Retriever().retrieve(data, 4, show_progress=False)
    torch.manual_seed(0)
    model = load_cross_encoder(minilm_path, max_length=128)
    scored = rescore_candidates(
        cands, data, CrossEncoderScorer(model, precision="fp32", batch_size=7, max_batch_tokens=600),
        show_progress=False,
    )
    pairs, ours = [], []
    for q in range(len(data.queries)):
        for d, t in zip(cands.doc_ids[q].tolist(), scored.teacher_scores[q].tolist()):
            if d != EMPTY:
                pairs.append((data.queries.texts[q], data.corpus.passages[d]))
                ours.append(t)
        for d, t in zip(data.positives[q].tolist(), scored.teacher_positive_scores[q].tolist()):
            pairs.append((data.queries.texts[q], data.corpus.passages[d]))
            ours.append(t)
    # the reference: one pair at a time (no padding), sigmoid undone by comparing probabilities
    reference = np.array([model.predict([p], activation_fn=torch.nn.Identity(), show_progress_bar=False)[0]
                          for p in pairs])
    assert np.asarray(ours) == pytest.approx(reference, abs=1e-4)
    assert np.isnan(scored.teacher_scores[cands.doc_ids == EMPTY]).all()


def test_killed_and_resumed_rescoring_equals_uninterrupted(tmp_path, tiny_train, bm25_candidates):
    full = rescore_candidates(bm25_candidates, tiny_train, OverlapScorer(), show_progress=False)
    run = RunDir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        rescore_candidates(bm25_candidates, tiny_train, OverlapScorer(fail_after=3), run_dir=run, shard_size=100,
                           show_progress=False)
    parts = list((run.path / "teacher").glob("*.parts/*.npy"))
    assert len(parts) == 3 and not list((run.path / "teacher").glob("*.npy"))
    resumed_scorer = OverlapScorer()
    resumed = rescore_candidates(bm25_candidates, tiny_train, resumed_scorer, run_dir=run, shard_size=100,
                                 show_progress=False)
    n_pairs = len(candidate_pairs(bm25_candidates, tiny_train.positives)[0])
    assert resumed_scorer.pairs == n_pairs - 300  # the three saved shards were not scored again
    np.testing.assert_array_equal(resumed.teacher_scores, full.teacher_scores)
    np.testing.assert_array_equal(resumed.teacher_positive_scores, full.teacher_positive_scores)
    assert not list((run.path / "teacher").glob("*.parts"))  # shards merged into one file
    again = OverlapScorer()
    rescore_candidates(bm25_candidates, tiny_train, again, run_dir=run, shard_size=100, show_progress=False)
    assert again.pairs == 0


def test_another_teacher_never_reuses_cached_scores(tmp_path, tiny_train, bm25_candidates):
    run = RunDir(tmp_path)
    a = rescore_candidates(bm25_candidates, tiny_train, OverlapScorer(), run_dir=run, show_progress=False)
    other = OverlapScorer(salt="x")
    b = rescore_candidates(bm25_candidates, tiny_train, other, run_dir=run, show_progress=False)
    assert other.pairs > 0
    np.testing.assert_array_equal(b.teacher_scores[np.isfinite(a.teacher_scores)],
                                  a.teacher_scores[np.isfinite(a.teacher_scores)] + 1.0)


def test_teacher_scores_round_trip_through_parquet(tmp_path, tiny_train, bm25_candidates):
    scored = rescore_candidates(bm25_candidates, tiny_train, OverlapScorer(), show_progress=False)
    scored.save(tmp_path / "c.parquet")
    back = Candidates.load(tmp_path / "c.parquet")
    np.testing.assert_array_equal(back.teacher_scores, scored.teacher_scores)
    np.testing.assert_array_equal(back.teacher_positive_scores, scored.teacher_positive_scores)
    assert back.teacher == "overlap"
    bm25_candidates.save(tmp_path / "plain.parquet")
    assert Candidates.load(tmp_path / "plain.parquet").teacher_scores is None


def test_miner_rescores_once_and_later_selection_reads_saved_scores(tmp_path, tiny_train):
    scorer = OverlapScorer()
    config = SelectionConfig(num_negatives=2, denoise="absolute", denoise_threshold=3.0, if_short="keep")
    first = Miner(BM25Retriever(), config, depth=10, run_dir=tmp_path, show_progress=False, teacher=scorer).mine(tiny_train)
    assert scorer.pairs > 0
    again = OverlapScorer()
    second = Miner(BM25Retriever(), config, depth=10, run_dir=tmp_path, show_progress=False, teacher=again).mine(tiny_train)
    assert again.pairs == 0 and second.reused_candidates
    # no teacher passed: the scores saved with the candidates are used
    third = Miner(BM25Retriever(), config, depth=10, run_dir=tmp_path, show_progress=False).mine(tiny_train)
    np.testing.assert_array_equal(third.selection.negatives, first.selection.negatives)


def test_rescoring_other_data_is_refused(tiny_train, bm25_candidates):
    with pytest.raises(HardnegError, match="other data"):
        rescore_candidates(bm25_candidates, tiny_train.subset([0, 1]), OverlapScorer(), show_progress=False)


def test_a_teacher_that_reranks_dev_worse_than_the_first_stage_is_flagged():
    from hardneg.train.reranker import TeacherTrainingResult

    def result(reranked: float) -> TeacherTrainingResult:
        return TeacherTrainingResult("t", "b", {"loss": "listwise"}, 10, 30, 3, {"train": 1.0},
                                     dev={"first_stage": {"ndcg@10": 0.7697}, "reranked": {"ndcg@10": reranked}},
                                     dev_queries=20)

    table = result(0.2237).format_table()
    assert table.splitlines()[-1] == (
        "WARNING   this teacher reranks dev worse than the first stage (nDCG@10 0.2237 vs 0.7697): it is "
        "undertrained. Train longer (--max-steps, --epochs) or on more queries before mining with it.")
    assert "WARNING" not in result(0.8).format_table()
    assert TeacherTrainingResult("t", "b", {"loss": "x"}, 1, 1, 1, {}).weaker_than_first_stage() is None  # no dev


def test_a_bi_encoder_folder_is_refused_as_a_teacher(tiny_models):
    """Loaded as a cross-encoder, a bi-encoder gets a random scoring head: its scores would label nothing."""
    from hardneg.errors import HardnegError
    from hardneg.teacher.scorer import CrossEncoderScorer

    bi, ce = map(str, tiny_models)
    with pytest.raises(HardnegError, match="has no trained scoring head"):
        CrossEncoderScorer(bi, precision="fp32").score_pairs(["q"], ["d"], show_progress=False)
    assert CrossEncoderScorer(ce, precision="fp32").score_pairs(["q"], ["d"], show_progress=False).shape == (1,)
