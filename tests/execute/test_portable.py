"""What travels to a worker: models by name or path (never a loaded model), with the fingerprint they had here."""

from __future__ import annotations

import pickle

import pytest

from hardneg.errors import HardnegError


def test_an_encoder_by_path_travels_as_its_path_with_the_same_key(tiny_model):
    from hardneg.retrieve.dense import EncodeJob
    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder(tiny_model, max_length=16, precision="fp32", query_prompt="q: ")
    encoder.encode_queries(["load the model here"], show_progress=False)
    job = EncodeJob(encoder).portable()
    copy = job.encoder
    assert copy is not encoder and copy._model is None  # the loaded model stays here
    assert copy.key() == encoder.key() and copy.query_prompt == "q: " and copy.max_length == 16
    assert len(pickle.dumps(job)) < 2_000


def test_a_model_in_memory_travels_as_a_snapshot_saved_once_per_fingerprint(tmp_path, tiny_model):
    import torch
    from sentence_transformers import SentenceTransformer

    from hardneg.retrieve.encoder import SentenceTransformerEncoder

    model = SentenceTransformer(tiny_model, device="cpu")
    encoder = SentenceTransformerEncoder(model, max_length=16, precision="fp32")
    with pytest.raises(HardnegError, match="holds a model in memory only"):
        encoder.portable(None)
    first = encoder.portable(tmp_path)
    assert first.key() == encoder.key() and (tmp_path / encoder.key()).is_dir()
    assert encoder.portable(tmp_path)._model_arg == first._model_arg  # reused, not saved again
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    encoder.forget_key()
    second = encoder.portable(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [encoder.key()]  # the older snapshot is gone
    assert second.key() == encoder.key()
    saved = SentenceTransformer(second._model_arg, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(saved.parameters(), model.parameters()))  # the current weights


def test_a_scorer_travels_only_as_a_trained_cross_encoder_directory(tiny_models):
    from hardneg.teacher.rescore import ScoreJob
    from hardneg.teacher.scorer import CrossEncoderScorer

    bi, ce = map(str, tiny_models)
    scorer = CrossEncoderScorer(ce, max_length=32, precision="fp32")
    copy = ScoreJob(scorer).portable().scorer
    assert copy is not scorer and copy._model is None and copy.key() == scorer.key()
    with pytest.raises(HardnegError, match="holds no trained cross-encoder head: each worker would draw its own"):
        CrossEncoderScorer(bi).portable()
    with pytest.raises(HardnegError, match="holds a cross-encoder in memory only"):
        CrossEncoderScorer(scorer.model).portable()
