"""Encoders: the model edge of dense retrieval.

The :class:`Encoder` protocol is all the rest of hardneg needs; a fake, an ONNX
model or a remote service can stand in. :class:`SentenceTransformerEncoder` loads
any sentence-transformers model name or local path.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hardneg.choices import PRECISIONS, Precision, check_choice
from hardneg.errors import HardnegError
from hardneg.store import fingerprint

logger = logging.getLogger(__name__)



class Encoder(Protocol):
    """Turns texts into L2-normalised ``float32[n, dim]`` embeddings."""

    def key(self) -> str:
        """Fingerprint of everything that changes the embeddings (weights, prompts, length)."""
        ...

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool = True) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool = True) -> np.ndarray: ...


def resolve_precision(precision: str, loaded_model: Any, device: str | None) -> str:
    """``fp32`` or ``bf16`` for a requested precision (``auto`` picks bf16 on CUDA or a bf16 CPU).

    Args:
        precision: ``auto``, ``fp32`` or ``bf16``.
        loaded_model: the model if already loaded (its device decides), else None.
        device: the device the model will be loaded on, if the caller chose one.
    """
    if precision != "auto":
        return precision
    import torch

    where = str(loaded_model.device) if loaded_model is not None else (device or "")
    if where.startswith("cuda") or (not where and torch.cuda.is_available()):
        return "bf16"
    return "bf16" if cpu_supports_bf16() else "fp32"


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - old torch builds
        return False


def limit_onednn_cache() -> None:
    """Keep oneDNN's primitive cache at 8 entries, unless the user sized it (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``).

    On CPU, oneDNN keeps a compiled kernel (with re-laid-out weights under bf16) per input
    shape, 1,024 by default; batches of varying lengths would then hold hundreds of MB
    to GB. A small cache costs little speed. oneDNN reads the variable when it first
    builds a kernel, so this must run before the first forward pass of the process
    (importing torch before it is fine); the CLI calls it first thing.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")


class SentenceTransformerEncoder:
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
        check_choice("precision", precision, PRECISIONS)
        if batch_size < 1:
            raise HardnegError(f"batch_size must be at least 1, got {batch_size}.")
        if max_batch_tokens < 1:
            raise HardnegError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}.")
        if max_length is not None and max_length < 1:
            raise HardnegError(f"max_length must be at least 1 token, got {max_length}.")
        self._model_arg = model
        self._model = None if isinstance(model, (str, Path)) else model
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.precision = precision
        self.device = device
        self._key: str | None = None

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (loaded on first use)."""
        if self._model is None:
            self._model = load_sentence_transformer(str(self._model_arg), device=self.device)
        if self.max_length is not None and self._model.max_seq_length != self.max_length:
            set_max_length(self._model, self.max_length, self._model_arg)
        return self._model

    def wraps(self, model: Any) -> bool:
        """True when this encoder encodes with ``model`` itself (the very object, not a copy of its weights)."""
        return self._model is model

    def resolved_precision(self) -> str:
        """``fp32`` or ``bf16``: what ``auto`` means on this machine."""
        return resolve_precision(self.precision, self._model, self.device)

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

    def forget_key(self) -> None:
        """Drop the cached fingerprint (call after the weights changed in place, e.g. training)."""
        self._key = None

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

    def encode_queries(self, texts: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        return self._encode(texts, self.query_prompt, show_progress)

    def encode_documents(self, texts: Sequence[str], *, show_progress: bool = True) -> np.ndarray:
        return self._encode(texts, self.document_prompt, show_progress)

    def _encode(self, texts: Sequence[str], prompt: str | None, show_progress: bool) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        limit_onednn_cache()
        model = self.model
        texts = list(texts)
        out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
        if not texts:
            return out
        device_type = "cuda" if str(model.device).startswith("cuda") else "cpu"
        autocast = (
            torch.autocast(device_type=device_type, dtype=torch.bfloat16)
            if self.resolved_precision() == "bf16"
            else contextlib.nullcontext()
        )
        batches = token_budget_batches(self._token_lengths(texts, prompt), self.batch_size, self.max_batch_tokens)
        with torch.inference_mode(), autocast, tqdm(
            total=len(texts), desc="Encoding", unit="text", disable=not show_progress
        ) as bar:
            for rows in batches:
                emb = model.encode(
                    [texts[i] for i in rows],
                    prompt=prompt,
                    batch_size=len(rows),
                    normalize_embeddings=True,
                    convert_to_tensor=True,
                    show_progress_bar=False,
                )
                out[rows] = emb.float().cpu().numpy()
                bar.update(len(rows))
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


def token_budget_batches(lengths: np.ndarray, max_batch: int, max_tokens: int) -> list[np.ndarray]:
    """Split rows into batches of similar length holding at most ``max_tokens`` padded tokens.

    Rows are taken longest first; a batch of texts of (padded) length ``L`` holds
    ``clamp(max_tokens // L, 1, max_batch)`` texts. Long texts get small batches (bounded
    activation memory), short texts large ones (fewer, fuller matrix products).

    Returns:
        Row-index arrays, together a permutation of ``range(len(lengths))``.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = min(max(max_tokens // longest, 1), max_batch)
        batches.append(order[start : start + size])
        start += size
    return batches


def position_limit(model) -> int | None:
    """The most tokens ``model`` (a SentenceTransformer or CrossEncoder) can read: its position embeddings."""
    inner = getattr(model, "model", None)  # CrossEncoder
    try:
        inner = inner if inner is not None else model[0].auto_model  # SentenceTransformer
    except (TypeError, IndexError, AttributeError, KeyError):
        return None
    config = getattr(inner, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions < 1:
        return None
    # RoBERTa-style models number positions from padding_idx + 1: two slots are never a token's
    return positions - 2 if "roberta" in str(getattr(config, "model_type", "")) else positions


def set_max_length(model, max_length: int | None, name: Any = "the model") -> None:
    """Set ``model.max_seq_length``, refusing a length the model cannot read (its position limit)."""
    if max_length is None:
        return
    if max_length < 1:
        raise HardnegError(f"--max-length must be at least 1 token, got {max_length}.")
    limit = position_limit(model)
    if limit is not None and max_length > limit:
        raise HardnegError(f"--max-length {max_length} exceeds what {name} can read ({limit} tokens); pass "
                           f"--max-length {limit} or less.")
    model.max_seq_length = max_length


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


def first_line(exc: BaseException) -> str:
    """An exception's message on one line (for one-line errors)."""
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")


WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt"}
CONFIG_SUFFIXES = {".json", ".txt", ".model"}


def directory_fingerprint(path: Path) -> str:
    """Hash a model directory's weight and config files (no model load needed).

    Exported runtimes (``onnx/``, ``openvino/``) are left out: they do not change what
    sentence-transformers loads by default.
    """
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.suffix in WEIGHT_SUFFIXES | CONFIG_SUFFIXES
        and not {"onnx", "openvino"} & set(p.relative_to(path).parts)
    )
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise HardnegError(f"{path} holds no model weights (*.safetensors or *.bin); is it a model directory?")
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(path)).encode())
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def state_dict_fingerprint(model) -> str:
    """Hash a loaded model's parameters (for in-memory or fine-tuned models)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
