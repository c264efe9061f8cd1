"""hardneg: mine, clean and train with hard negatives for dense retrievers.

The public API. Importing the package loads only the standard library: every name is
imported on first use, so ``import hardneg`` (and the ``hardneg`` command's start-up)
pulls in neither numpy, torch nor FAISS.
"""

from __future__ import annotations

import importlib
import logging

# The submodule hardneg.export shares its name with its function: importing it here, once,
# and binding the function after it keeps ``hardneg.export`` the function whatever is
# imported later (the module imports only the standard library).
from hardneg.export import FORMATS, build_rows, export

logger = logging.getLogger(__name__)

__version__ = "0.1.0"

# public name -> the module that defines it
_WHERE = {
    "BM25Config": "hardneg.retrieve.bm25",
    "BM25Retriever": "hardneg.retrieve.bm25",
    "Candidates": "hardneg.candidates",
    "HardnegError": "hardneg.errors",
    "IndexConfig": "hardneg.retrieve.search",
    "Miner": "hardneg.mine",
    "MiningReport": "hardneg.report",
    "MiningResult": "hardneg.mine",
    "Selection": "hardneg.select",
    "SelectionConfig": "hardneg.select",
    "select_negatives": "hardneg.select",
    "DenseRetriever": "hardneg.retrieve.dense",
    "HybridRetriever": "hardneg.retrieve.hybrid",
    "SentenceTransformerEncoder": "hardneg.retrieve.encoder",
    "load": "hardneg.data",
    "load_beir": "hardneg.data",
    "load_pairs": "hardneg.data",
    "from_hf_dataset": "hardneg.data",
    "RetrievalData": "hardneg.data",
    "CrossEncoderScorer": "hardneg.teacher.scorer",
    "rescore_candidates": "hardneg.teacher.rescore",
    "train_reranker": "hardneg.train.reranker",
    "TeacherTrainingConfig": "hardneg.train.reranker",
    "render_html": "hardneg.report_html",
    "EmbeddedExecutor": "hardneg.execute",
    "RayExecutor": "hardneg.execute.ray_engine",
}

__all__ = sorted(
    ["BM25Config", "BM25Retriever", "Candidates", "FORMATS", "HardnegError", "IndexConfig", "Miner", "MiningReport",
     "MiningResult", "Selection", "SelectionConfig", "build_rows", "export", "select_negatives"]
)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'hardneg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
