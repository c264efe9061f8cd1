"""Tiny, randomly initialised models built offline: the real CLI paths, near-instant encoding."""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def _bert_config(**extra):
    from transformers import BertConfig

    # MiniLM's vocabulary (its tokenizer files are copied), 2 layers of width 32
    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512, **extra)


def _copy_tokenizer(minilm: Path, folder: Path) -> None:
    for name in TOKENIZER_FILES:
        shutil.copy(minilm / name, folder / name)


def build_tiny_bi_encoder(minilm: str | Path, folder: Path) -> Path:
    """A sentence-transformers model: a random 2-layer BERT with mean pooling, MiniLM's tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertModel

    torch.manual_seed(0)
    raw = folder.with_name(folder.name + "-raw")
    raw.mkdir(parents=True)
    BertModel(_bert_config()).save_pretrained(raw)
    _copy_tokenizer(Path(minilm), raw)
    transformer = Transformer(str(raw), max_seq_length=128)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(folder))
    shutil.rmtree(raw)
    return folder


def build_tiny_cross_encoder(minilm: str | Path, folder: Path) -> Path:
    """A one-logit cross-encoder directory: a random 2-layer BertForSequenceClassification."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    folder.mkdir(parents=True)
    BertForSequenceClassification(_bert_config(num_labels=1)).save_pretrained(folder)
    _copy_tokenizer(Path(minilm), folder)
    return folder
