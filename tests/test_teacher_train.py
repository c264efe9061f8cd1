"""Teacher training: a few steps on the tiny sample beat the untrained head on dev reranking."""

from __future__ import annotations

import json

import pytest

from hardneg.errors import HardnegError
from hardneg.score.train import TeacherTrainingConfig, evaluate_reranker, train_reranker


@pytest.mark.slow
def test_training_improves_dev_reranking_over_the_untrained_head(tmp_path, tiny_dir, minilm_path):
    import torch

    from hardneg.data import load_beir
    from hardneg.score.cross_encoder import CrossEncoderScorer, load_cross_encoder

    train, dev = load_beir(tiny_dir, "train"), load_beir(tiny_dir, "dev")
    config = TeacherTrainingConfig(negatives="bm25", negatives_per_query=3, max_steps=40, batch_size=16,
                                   max_length=64, learning_rate=2e-4, save_steps=20, eval_depth=20, precision="fp32")
    torch.manual_seed(config.seed)  # the same fresh head training starts from
    untrained = CrossEncoderScorer(load_cross_encoder(minilm_path, max_length=64), precision="fp32")
    before, n = evaluate_reranker(untrained, dev, depth=20, show_progress=False)

    result = train_reranker(train, minilm_path, tmp_path / "teacher", config, dev_data=dev, show_progress=False)
    assert result.steps == 40 and result.train_pairs == 4 * len(train.queries)
    assert result.dev_queries == n == len(dev.queries)
    assert result.dev["reranked"]["ndcg@10"] > before["reranked"]["ndcg@10"] + 0.3
    saved = json.loads((tmp_path / "teacher" / "train_reranker.json").read_text())
    assert saved["dev"]["reranked"]["ndcg@10"] == pytest.approx(result.dev["reranked"]["ndcg@10"])
    # the saved teacher loads as a scorer and its directory fingerprint keys its scores
    trained = CrossEncoderScorer(str(tmp_path / "teacher"), precision="fp32")
    after, _ = evaluate_reranker(trained, dev, depth=20, show_progress=False)
    assert after["reranked"]["ndcg@10"] == pytest.approx(result.dev["reranked"]["ndcg@10"], abs=0.02)
    assert not list((tmp_path / "teacher.work").glob("checkpoints-*"))


def test_training_config_rejects_bad_values():
    with pytest.raises(HardnegError, match="negatives"):
        TeacherTrainingConfig(negatives="sparse")
    with pytest.raises(HardnegError, match="max_steps"):
        TeacherTrainingConfig(max_steps=0)
