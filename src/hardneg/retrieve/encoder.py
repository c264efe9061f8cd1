"""Encoders: the model edge of dense retrieval.

The :class:`Encoder` protocol is all the rest of hardneg needs; a fake, an ONNX
model or a remote service can stand in. :class:`SentenceTransformerEncoder` loads
any sentence-transformers model name or local path.
"""

from __future__ import annotations

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


class Encoder(Protocol):
    """Turns texts into L2-normalised ``float32[n, dim]`` embeddings."""

    def key(self) -> str:
        """Fingerprint of everything that changes the embeddings (weights, prompts, length)."""
        ...

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool = True) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool = True) -> np.ndarray: ...


class SentenceTransformerEncoder(LazyModel):
    """A sentence-transformers bi-encoder.

    Args:
        model: a model name, a local path, or a loaded ``SentenceTransformer``.
        query_prompt: text prepended to queries (e.g. ``"query: "``).
        document_prompt: text prepended to documents.
        max_length: token limit; default: the model's own.
        batch_size: most texts per forward pass (texts are sorted by length first).
        max_batch_tokens: most padded tokens per forward pass: long texts go in
            smaller batches, which bounds activation memory.
        precision: ``fp32``; ``bf16`` autocast (about twice as fast on CPUs with
            AVX512-BF16/AMX); ``auto`` picks bf16 where the hardware has it.
        device: torch device; default: the model's.
    """

    def __init__(
        self,
        model: Any,
        *,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        max_length: int | None = None,
        batch_size: int = 64,
        max_batch_tokens: int = 4096,
        precision: Precision = "auto",
        device: str | None = None,
    ) -> None:
        super().__init__(model, max_length=max_length, batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                         precision=precision, device=device)
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt

    def _load(self, name_or_path: str):
        return load_sentence_transformer(name_or_path, device=self.device)

    def key(self) -> str:
        if self._key is None:
            local = Path(str(self._model_arg))
            max_length = self.max_length
            if isinstance(self._model_arg, (str, Path)) and local.is_dir():
                # Hashing the files avoids loading the model; they also fix the default max length.
                weights = directory_fingerprint(local)
            else:
                weights = state_dict_fingerprint(self.model)
                max_length = self.max_length or self.model.max_seq_length
            self._key = fingerprint(
                "st-encoder", weights, self.query_prompt, self.document_prompt, max_length, self.resolved_precision()
            )
        return self._key

    def snapshot(self, folder: str | Path) -> SentenceTransformerEncoder:
        """Save the current weights in ``folder``; an encoder that loads them, with the same settings.

        The returned encoder holds only the path, so it pickles cheaply into another
        process (asynchronous refresh) and keeps encoding the snapshot while this
        model trains on.
        """
        self.model.save(str(folder))
        return SentenceTransformerEncoder(
            str(folder), query_prompt=self.query_prompt, document_prompt=self.document_prompt,
            max_length=self.max_length or self.model.max_seq_length, batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens, precision=self.resolved_precision(), device=self.device,
        )

    def portable(self, snapshot_dir: str | Path | None = None) -> SentenceTransformerEncoder:
        """A copy holding the model by name or path, with the same settings and fingerprint: what another
        process (a Ray worker) loads. A model that exists only in memory (one being trained) is saved first,
        under ``snapshot_dir/<fingerprint>`` (once per fingerprint; older snapshots there are removed)."""
        model, max_length = self._model_arg, self.max_length
        if not isinstance(model, (str, Path)):
            if snapshot_dir is None:
                raise HardnegError("This encoder holds a model in memory only, so workers cannot load it: pass a "
                                   "run directory (its snapshot goes there) or a model name or path.")
            model, max_length = save_model_snapshot(self.model, Path(snapshot_dir), self.key()), self.model.max_seq_length
        copy = SentenceTransformerEncoder(
            str(model), query_prompt=self.query_prompt, document_prompt=self.document_prompt, max_length=max_length,
            batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens, precision=self.resolved_precision(),
            device=self.device,
        )
        copy._key = self.key()
        return copy

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        return self._encode(texts, self.query_prompt, show_progress)

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        return self._encode(texts, self.document_prompt, show_progress)

    def _encode(self, texts: Sequence[str], prompt: str | None, show_progress: bool) -> np.ndarray:
        model = self.model
        texts = list(texts)
        out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
        if not texts:
            return out

        def step(rows: np.ndarray) -> None:
            emb = model.encode([texts[i] for i in rows], prompt=prompt, batch_size=len(rows),
                               normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)
            out[rows] = emb.float().cpu().numpy()

        self.run_batches(self._token_lengths(texts, prompt), step, desc="Encoding", unit="text",
                         show_progress=show_progress)
        return out

    def _token_lengths(self, texts: list[str], prompt: str | None) -> np.ndarray:
        """Token count of each text as the model will see it (prompt included, truncated)."""
        model = self.model
        lengths = np.empty(len(texts), dtype=np.int64)
        # in chunks, keeping only the lengths: token lists of a whole corpus are large
        for start in range(0, len(texts), 256):
            chunk = texts[start : start + 256]
            ids = model.tokenizer(
                [prompt + t for t in chunk] if prompt else chunk,
                truncation=True,
                max_length=model.max_seq_length,
                return_attention_mask=False,
                return_token_type_ids=False,
            )["input_ids"]
            lengths[start : start + len(chunk)] = [len(x) for x in ids]
        return lengths


def save_model_snapshot(model, folder: Path, key: str) -> Path:
    """Save ``model`` (anything with ``save(path)``) as ``folder/key``, atomically; reuse it when there.

    Other snapshots in ``folder`` are removed: a training run keeps only its current weights.
    """
    import shutil
    import tempfile

    target = folder / key
    if not target.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder))
        try:
            model.save(str(tmp))
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for other in folder.iterdir():
        if other.is_dir() and other.name != key and not other.name.startswith("."):
            shutil.rmtree(other, ignore_errors=True)
    return target


def load_sentence_transformer(name_or_path: str, device: str | None = None):
    """Load a SentenceTransformer, turning the usual failures into actionable errors."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise HardnegError(
            "Dense retrieval needs sentence-transformers and torch: pip install 'hardneg[dense]' "
            "(install torch==2.13.0 first for the CPU build)."
        ) from exc
    try:
        return SentenceTransformer(name_or_path, device=device)
    except Exception as exc:  # a missing, truncated or foreign model: any load failure is the input's
        raise HardnegError(
            f"Could not load the model {name_or_path!r}: {type(exc).__name__}: {first_line(exc)}. Pass a complete "
            "sentence-transformers model directory (config.json and weights), or a model name already in the "
            "Hugging Face cache (set HF_HUB_OFFLINE=1 when there is no network)."
        ) from exc


