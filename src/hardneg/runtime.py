"""Running a transformer: precision, autocast, token-budget batches, weight fingerprints, lazy loading.

What the bi-encoder (:class:`hardneg.retrieve.encoder.SentenceTransformerEncoder`) and
the cross-encoder (:class:`hardneg.teacher.scorer.CrossEncoderScorer`) share, and the
one place that says what precision ``auto`` means (:func:`resolve_precision`). torch
is imported only inside the functions that run a model.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hardneg.choices import PRECISIONS, Precision, check_choice
from hardneg.errors import HardnegError


def resolve_precision(precision: str, device: str, *, training_cross_encoder: bool = False) -> str:
    """``fp32`` or ``bf16``: what a requested precision means on ``device``.

    ``auto`` means bf16 where the device computes it natively — a GPU, or a CPU with
    AVX512-BF16/AMX (encoding, scoring and bi-encoder training run about twice as fast
    there) — and fp32 elsewhere. One exception, measured: training a cross-encoder on
    a CPU stays fp32 (bf16 autocast made its steps slower; ``training_cross_encoder``).

    Args:
        precision: ``auto``, ``fp32`` or ``bf16``.
        device: the model's device (``cpu``, ``cuda:0``); ``""`` when not known yet
            (then a visible GPU counts).
    """
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    import torch

    if device.startswith("cuda") or (not device and torch.cuda.is_available()):
        return "bf16"
    if training_cross_encoder:
        return "fp32"
    return "bf16" if cpu_supports_bf16() else "fp32"


def limit_onednn_cache() -> None:
    """Keep oneDNN's primitive cache at 8 entries, unless the user sized it (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``).

    On CPU, oneDNN keeps a compiled kernel (with re-laid-out weights under bf16) per input
    shape, 1,024 by default; batches of varying lengths would then hold hundreds of MB
    to GB. A small cache costs little speed. oneDNN reads the variable when it first
    builds a kernel, so this must run before the first forward pass of the process
    (importing torch before it is fine); the CLI calls it first thing.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")


# batches between two returns of the C heap's free pages to the OS, while a model runs
TRIM_EVERY_BATCHES = 16


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_heap() -> None:
    """Hand the C heap's free pages back to the OS (glibc's ``malloc_trim(0)``); nothing elsewhere.

    Token-budget batches give almost every batch its own shape. Under bf16 autocast the
    activations freed after one batch do not fit the next one's, and glibc keeps the freed
    blocks in its heap: encoding debian-desc small (11,215 documents and 9,021 queries,
    all-MiniLM-L6-v2) grew the process by ~600 MB, to a peak of 1,387–1,507 MB. Trimming every
    :data:`TRIM_EVERY_BATCHES` batches held it to 1,088 MB in the same seconds (69.8 s against
    69–71 s); trimming every batch cost 15 % (82 s) for 1,050 MB (bench/RESULTS.md, 2026-12-04).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def autocast(precision: str, device: str):
    """A context running torch ops in bf16 (``precision="bf16"``) on ``device``, else one doing nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - old torch builds
        return False


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


class LazyModel:
    """A sentence-transformers model loaded on first use, with its max length, precision and fingerprint.

    The common part of the bi-encoder and the cross-encoder: subclasses give
    :meth:`_load` (name or path -> model) and their own :meth:`key`.

    Args:
        model: a model name, a local path, or a loaded model.
        max_length: token limit; default: the model's own.
        batch_size: most texts (or pairs) per forward pass.
        max_batch_tokens: most padded tokens per forward pass.
        precision: ``fp32``, ``bf16`` or ``auto`` (:func:`resolve_precision`).
        device: torch device; default: the model's.
    """

    def __init__(self, model: Any, *, max_length: int | None, batch_size: int, max_batch_tokens: int,
                 precision: Precision, device: str | None) -> None:
        check_choice("precision", precision, PRECISIONS)
        if batch_size < 1:
            raise HardnegError(f"batch_size must be at least 1, got {batch_size}.")
        if max_batch_tokens < 1:
            raise HardnegError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}.")
        if max_length is not None and max_length < 1:
            raise HardnegError(f"max_length must be at least 1 token, got {max_length}.")
        self._model_arg = model
        self._model = None if isinstance(model, (str, Path)) else model
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.precision = precision
        self.device = device
        self._key: str | None = None

    def _load(self, name_or_path: str):
        raise NotImplementedError

    @property
    def model(self):
        """The loaded model (loaded on first use), its max length set."""
        if self._model is None:
            self._model = self._load(str(self._model_arg))
        if self.max_length is not None and self._model.max_seq_length != self.max_length:
            set_max_length(self._model, self.max_length, self._model_arg)
        return self._model

    def local_model_dir(self) -> Path | None:
        """The local folder the model loads from; None for a hub name or a model held in memory."""
        if isinstance(self._model_arg, (str, Path)) and Path(str(self._model_arg)).is_dir():
            return Path(str(self._model_arg))
        return None

    def loading_from(self, folder: str | Path):
        """A copy that loads the model from ``folder`` (a copy of :meth:`local_model_dir` made elsewhere,
        e.g. on a worker's machine), with this one's settings and fingerprint."""
        key = self.key()
        twin = copy.copy(self)
        twin._model_arg, twin._model, twin._key = str(folder), None, key
        return twin

    def wraps(self, model: Any) -> bool:
        """True when this runs ``model`` itself (the very object, not a copy of its weights)."""
        return self._model is model

    def resolved_precision(self) -> str:
        """``fp32`` or ``bf16``: what ``auto`` means for this model's device."""
        where = str(self._model.device) if self._model is not None else (self.device or "")
        return resolve_precision(self.precision, where)

    def forget_key(self) -> None:
        """Drop the cached fingerprint (call after the weights changed in place, e.g. training)."""
        self._key = None

    def run_batches(self, lengths: np.ndarray, step: Callable[[np.ndarray], None], *, desc: str, unit: str,
                    show_progress: bool) -> None:
        """Call ``step(rows)`` on token-budget batches of rows, in inference mode and the resolved precision,
        handing freed heap pages back to the OS every :data:`TRIM_EVERY_BATCHES` batches."""
        import torch
        from tqdm.auto import tqdm

        limit_onednn_cache()
        model = self.model
        batches = token_budget_batches(lengths, self.batch_size, self.max_batch_tokens)
        with torch.inference_mode(), autocast(self.resolved_precision(), str(model.device)), tqdm(
            total=len(lengths), desc=desc, unit=unit, disable=not show_progress
        ) as bar:
            for done, rows in enumerate(batches, 1):
                step(rows)
                bar.update(len(rows))
                if done % TRIM_EVERY_BATCHES == 0:
                    release_free_heap()
