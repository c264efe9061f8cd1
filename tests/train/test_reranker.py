"""Teacher training: a few steps on the tiny sample beat the untrained head; a killed run resumes."""

from __future__ import annotations

import json

import pytest

from hardneg.errors import HardnegError
from hardneg.train.reranker import TeacherTrainingConfig, evaluate_reranker, train_reranker


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loss", "negatives", "batch_size", "steps", "examples_per_query"),
    # listwise: one (query, positive, negative) tuple per positive, plus one in-batch negative;
    # bce: a positive pair and 3 negative pairs per query
    [("listwise", 1, 8, 20, 1), ("bce", 3, 16, 40, 4)],
)
def test_training_improves_dev_reranking_over_the_untrained_head(
    tmp_path, tiny_dir, minilm_path, loss, negatives, batch_size, steps, examples_per_query
):
    import torch

    from hardneg.data import load_beir
    from hardneg.teacher.scorer import CrossEncoderScorer, load_cross_encoder

    train, dev = load_beir(tiny_dir, "train"), load_beir(tiny_dir, "dev")
    config = TeacherTrainingConfig(negatives="bm25", negatives_per_query=negatives, loss=loss, in_batch_negatives=1,
                                   max_steps=steps, batch_size=batch_size, max_length=64, learning_rate=2e-4,
                                   save_steps=20, eval_depth=20, precision="fp32")
    torch.manual_seed(config.seed)  # the same fresh head training starts from
    untrained = CrossEncoderScorer(load_cross_encoder(minilm_path, max_length=64), precision="fp32")
    before, n = evaluate_reranker(untrained, dev, depth=20, show_progress=False)

    result = train_reranker(train, minilm_path, tmp_path / "teacher", config, dev_data=dev, show_progress=False)
    assert result.steps == steps and result.train_examples == examples_per_query * len(train.queries)
    assert result.dev_queries == n == len(dev.queries)
    assert result.dev["reranked"]["ndcg@10"] > before["reranked"]["ndcg@10"] + 0.3
    saved = json.loads((tmp_path / "teacher" / "train_reranker.json").read_text())
    assert saved["dev"]["reranked"]["ndcg@10"] == pytest.approx(result.dev["reranked"]["ndcg@10"])
    # the saved teacher loads as a scorer and its directory fingerprint keys its scores
    trained = CrossEncoderScorer(str(tmp_path / "teacher"), precision="fp32")
    after, _ = evaluate_reranker(trained, dev, depth=20, show_progress=False)
    assert after["reranked"]["ndcg@10"] == pytest.approx(result.dev["reranked"]["ndcg@10"], abs=0.02)
    assert not list((tmp_path / "teacher.work").glob("checkpoints-*"))


@pytest.mark.slow
def test_killed_training_resumes_from_its_last_checkpoint_and_ends_where_an_uninterrupted_run_ends(
    tmp_path, tiny_train, minilm_path, monkeypatch
):
    import torch
    from safetensors.torch import load_file
    from transformers import Trainer

    config = TeacherTrainingConfig(negatives="bm25", negatives_per_query=2, in_batch_negatives=1, max_queries=24,
                                   max_steps=6, batch_size=4, max_length=32, save_steps=3, precision="fp32")
    uninterrupted = train_reranker(tiny_train, minilm_path, tmp_path / "whole", config, show_progress=False)

    steps_trained = []
    original_step, original_save = Trainer.training_step, Trainer._save_checkpoint

    def counting_step(self, *args, **kwargs):
        steps_trained.append(self.state.global_step)
        return original_step(self, *args, **kwargs)

    def save_then_die(self, *args, **kwargs):
        original_save(self, *args, **kwargs)
        raise KeyboardInterrupt("killed after the first checkpoint")

    monkeypatch.setattr(Trainer, "training_step", counting_step)
    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_reranker(tiny_train, minilm_path, tmp_path / "split", config, show_progress=False)
    assert steps_trained == [0, 1, 2]
    assert list((tmp_path / "split.work").glob("checkpoints-*/checkpoint-3"))

    monkeypatch.setattr(Trainer, "_save_checkpoint", original_save)
    steps_trained.clear()
    resumed = train_reranker(tiny_train, minilm_path, tmp_path / "split", config, show_progress=False)
    assert steps_trained == [3, 4, 5]  # only the steps after the checkpoint ran again
    assert resumed.steps == uninterrupted.steps == 6
    whole = load_file(str(tmp_path / "whole" / "model.safetensors"))
    split = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert whole.keys() == split.keys()
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=0, atol=1e-5, msg=name)


def test_training_config_rejects_bad_values():
    with pytest.raises(HardnegError, match="negatives"):
        TeacherTrainingConfig(negatives="sparse")
    with pytest.raises(HardnegError, match="max_steps"):
        TeacherTrainingConfig(max_steps=0)
    with pytest.raises(HardnegError, match="loss must be listwise or bce"):
        TeacherTrainingConfig(loss="pairwise")
    with pytest.raises(HardnegError, match="in_batch_negatives"):
        TeacherTrainingConfig(in_batch_negatives=-1)
