"""Every closed list of allowed values, spelled once.

Config checks, CLI ``choices=`` and bench scripts read these tuples; the ``Literal``
types beside them are for type checkers and must list the same values (a test checks).
Standard library only: the CLI imports this at start-up.
"""

from __future__ import annotations

from typing import Literal

Sampling = Literal["top", "random", "simans"]
SAMPLING: tuple[str, ...] = ("top", "random", "simans")

IfShort = Literal["drop", "pad", "keep"]
IF_SHORT: tuple[str, ...] = ("drop", "pad", "keep")

ScoreSource = Literal["retriever", "teacher"]
SCORE_SOURCES: tuple[str, ...] = ("retriever", "teacher")

DenoiseRule = Literal["absolute", "relative", "probability"]
DENOISE_RULES: tuple[str, ...] = ("absolute", "relative", "probability")

RetrieverKind = Literal["bm25", "dense", "hybrid"]
RETRIEVERS: tuple[str, ...] = ("bm25", "dense", "hybrid")

Fusion = Literal["rrf", "union"]
FUSIONS: tuple[str, ...] = ("rrf", "union")

IndexKind = Literal["flat", "hnsw", "ivf", "ivf-pq", "ivf-sq8"]
INDEX_KINDS: tuple[str, ...] = ("flat", "hnsw", "ivf", "ivf-pq", "ivf-sq8")

EmbeddingDtype = Literal["float16", "float32"]
EMBEDDING_DTYPES: tuple[str, ...] = ("float16", "float32")

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")

ExecutorKind = Literal["embedded", "ray"]
EXECUTORS: tuple[str, ...] = ("embedded", "ray")


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise :class:`~hardneg.errors.HardnegError` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        from hardneg.errors import HardnegError

        raise HardnegError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
