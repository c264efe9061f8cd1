"""Cross-encoder teachers: the :class:`Scorer` protocol and a sentence-transformers scorer.

A scorer reads (query, document) pairs and returns one relevance *logit* per pair.
Logits, not probabilities, are what hardneg stores: a probability is one sigmoid
away (:func:`hardneg.select.denoise.sigmoid`), and logits keep their resolution at
both ends of the scale, which MarginMSE-style distillation needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hardneg.choices import Precision
from hardneg.errors import HardnegError
from hardneg.runtime import LazyModel, directory_fingerprint, first_line, state_dict_fingerprint
from hardneg.store import fingerprint

logger = logging.getLogger(__name__)


class Scorer(Protocol):
    """Scores (query, document) pairs: ``float32[n]`` relevance logits, higher = more relevant."""

    def key(self) -> str:
        """Fingerprint of everything that changes the scores (weights, max length, precision)."""
        ...

    def score_pairs(
        self, queries: Sequence[str], documents: Sequence[str], *, show_progress: bool = True
    ) -> np.ndarray: ...


def is_trained_cross_encoder_dir(path: Path) -> bool:
    """True when ``path`` holds a saved sequence-classification head (a trained cross-encoder).

    A bi-encoder directory (e.g. all-MiniLM-L6-v2) loads as a cross-encoder with a
    freshly, randomly initialised head: its files do not determine its scores.
    """
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in architectures)


def lacks_scoring_head(name_or_path: str | Path) -> bool:
    """True for a local model folder without a trained scoring head (a bi-encoder or a base model): loaded as a
    cross-encoder it gets a randomly initialised one. A Hub name, or anything else, is False."""
    path = Path(str(name_or_path))
    return (path / "config.json").is_file() and not is_trained_cross_encoder_dir(path)


def no_scoring_head_error(name_or_path: str | Path) -> HardnegError:
    """Why a :func:`lacks_scoring_head` model cannot be a teacher, and how to make one from it."""
    return HardnegError(
        f"{name_or_path} has no trained scoring head (a bi-encoder or a base model): as a teacher it would score "
        "with a randomly initialised one. Train a teacher from it first: hardneg train-reranker DATA --base "
        f"{name_or_path} --output runs/teacher, then pass --cross-encoder runs/teacher.")


class CrossEncoderScorer(LazyModel):
    """A sentence-transformers ``CrossEncoder`` with one output (a relevance logit).

    Pairs are tokenised once, sorted by token length and cut into batches holding at
    most ``max_batch_tokens`` padded tokens, so a forward pass pads little whichever
    query the pairs came from.

    Args:
        model: a model name, a local path, or a loaded ``CrossEncoder``. A path to a
            bi-encoder loads with a fresh, untrained head (train one with
            ``hardneg train-reranker``).
        max_length: token limit of a (query, document) pair; default: the model's own.
        batch_size: most pairs per forward pass.
        max_batch_tokens: most padded tokens per forward pass.
        precision: ``fp32``; ``bf16`` autocast; ``auto`` picks bf16 where the
            hardware has it. Part of :meth:`key`: bf16 scores are cached apart.
        device: torch device; default: the model's.
    """

    def __init__(
        self,
        model: Any,
        *,
        max_length: int | None = None,
        batch_size: int = 64,
        max_batch_tokens: int = 8192,
        precision: Precision = "auto",
        device: str | None = None,
    ) -> None:
        super().__init__(model, max_length=max_length, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                         precision=precision, device=device)

    def _load(self, name_or_path: str):
        if lacks_scoring_head(name_or_path):
            raise no_scoring_head_error(name_or_path)
        return load_cross_encoder(name_or_path, device=self.device)

    def key(self) -> str:
        if self._key is None:
            local = Path(str(self._model_arg))
            if isinstance(self._model_arg, (str, Path)) and local.is_dir() and is_trained_cross_encoder_dir(local):
                weights = directory_fingerprint(local)
                max_length = self.max_length or _saved_max_length(local)
            else:
                # an untrained head is random: only the loaded weights say what the scores are
                weights = state_dict_fingerprint(self.model)
                max_length = self.model.max_seq_length
            self._key = fingerprint("cross-encoder", weights, max_length, self.resolved_precision())
        return self._key

    def portable(self) -> CrossEncoderScorer:
        """A copy holding the model by name or path, with the same settings and fingerprint: what another
        process (a Ray worker) loads."""
        if not isinstance(self._model_arg, (str, Path)):
            raise HardnegError("This scorer holds a cross-encoder in memory only, so workers cannot load it: save it "
                               "(model.save(path)) and pass the path.")
        local = Path(str(self._model_arg))
        if local.is_dir() and not is_trained_cross_encoder_dir(local):
            raise HardnegError(f"{local} holds no trained cross-encoder head: each worker would draw its own random "
                               "head. Train one with `hardneg train-reranker` and pass its directory.")
        copy = CrossEncoderScorer(str(self._model_arg), max_length=self.max_length, batch_size=self.batch_size,
                                  max_batch_tokens=self.max_batch_tokens, precision=self.resolved_precision(),
                                  device=self.device)
        copy._key = self.key()
        return copy

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        """Relevance logits of ``(queries[i], documents[i])``, ``float32[n]``, in input order."""
        if len(queries) != len(documents):
            raise HardnegError(f"score_pairs: {len(queries)} queries but {len(documents)} documents; pass one of each per pair.")
        model = self.model
        n = len(queries)
        out = np.empty(n, dtype=np.float32)
        if not n:
            return out
        import torch

        identity = torch.nn.Identity()

        def step(rows: np.ndarray) -> None:
            scores = model.predict([(queries[i], documents[i]) for i in rows], batch_size=len(rows),
                                   activation_fn=identity, show_progress_bar=False, convert_to_tensor=True)
            out[rows] = scores.float().reshape(len(rows)).cpu().numpy()

        self.run_batches(self.pair_lengths(queries, documents), step, desc="Scoring pairs", unit="pair",
                         show_progress=show_progress)
        return out

    def pair_lengths(self, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
        """Token count of each pair as the model sees it (truncated to the max length)."""
        return pair_token_lengths(self.model, queries, documents)


def pair_token_lengths(model, queries: Sequence[str], documents: Sequence[str]) -> np.ndarray:
    """Token count of each (query, document) pair as ``model`` (a ``CrossEncoder``) sees it, truncated."""
    ids = model.tokenizer(
        list(queries), list(documents), truncation="longest_first", max_length=model.max_seq_length
    )["input_ids"]
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))


def _saved_max_length(path: Path) -> int | None:
    for name in ("tokenizer_config.json", "sentence_bert_config.json"):
        file = path / name
        if file.is_file():
            try:
                cfg = json.loads(file.read_text(encoding="utf-8"))
            except ValueError:
                continue
            for key in ("model_max_length", "max_seq_length", "max_length"):
                if isinstance(cfg.get(key), int):
                    return cfg[key]
    return None


@contextlib.contextmanager
def transformers_quiet():
    """transformers' own warnings off (errors still show) while the block runs."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def load_cross_encoder(name_or_path: str, device: str | None = None, *, max_length: int | None = None):
    """Load a one-output ``CrossEncoder``, turning the usual failures into actionable errors."""
    try:
        from sentence_transformers import CrossEncoder
    except ImportError as exc:
        raise HardnegError(
            "Cross-encoder teachers need sentence-transformers and torch: pip install 'hardneg[dense]' "
            "(install torch==2.13.0 first for the CPU build)."
        ) from exc
    if lacks_scoring_head(name_or_path):
        logger.info("%s has no scoring head: a new one is initialised (train-reranker trains it)", name_or_path)
    try:
        with transformers_quiet():  # its load report lists the new head's weights as MISSING, in colour
            model = CrossEncoder(name_or_path, num_labels=1, device=device, max_length=max_length)
    except Exception as exc:  # a missing, truncated or foreign model: any load failure is the input's
        raise HardnegError(
            f"Could not load the cross-encoder {name_or_path!r}: {type(exc).__name__}: {first_line(exc)}. Pass a "
            "complete local directory (e.g. one written "
            "by `hardneg train-reranker`), or a model name already in the Hugging Face cache (set HF_HUB_OFFLINE=1 "
            "when there is no network)."
        ) from exc
    if model.num_labels != 1:
        raise HardnegError(
            f"{name_or_path!r} is a cross-encoder with {model.num_labels} outputs; a teacher needs one relevance "
            "score per pair. Use a reranker trained with one label (hardneg train-reranker makes one)."
        )
    return model
