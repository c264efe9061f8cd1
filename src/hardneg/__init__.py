"""hardneg: mine, clean and train with hard negatives for dense retrievers.

The public API; importing it loads nothing heavy (no torch, no FAISS).
"""

from __future__ import annotations

import logging

from hardneg.candidates import Candidates
from hardneg.errors import HardnegError
from hardneg.export import FORMATS, build_rows, export
from hardneg.mine import Miner, MiningResult
from hardneg.report import MiningReport
from hardneg.retrieve.bm25 import BM25Config, BM25Retriever
from hardneg.retrieve.search import IndexConfig
from hardneg.select import Selection, SelectionConfig, select_negatives

logger = logging.getLogger(__name__)

__version__ = "0.1.0"

__all__ = [
    "BM25Config",
    "BM25Retriever",
    "Candidates",
    "FORMATS",
    "HardnegError",
    "IndexConfig",
    "Miner",
    "MiningReport",
    "MiningResult",
    "Selection",
    "SelectionConfig",
    "build_rows",
    "export",
    "select_negatives",
]


def __getattr__(name: str):
    # Heavy pieces load on first use: hardneg.DenseRetriever imports nothing until asked for.
    lazy = {
        "DenseRetriever": "hardneg.retrieve.dense",
        "HybridRetriever": "hardneg.retrieve.hybrid",
        "SentenceTransformerEncoder": "hardneg.retrieve.encoder",
        "load": "hardneg.data",
        "load_beir": "hardneg.data",
        "load_pairs": "hardneg.data",
        "from_hf_dataset": "hardneg.data",
        "RetrievalData": "hardneg.data",
        "CrossEncoderScorer": "hardneg.score.cross_encoder",
        "rescore_candidates": "hardneg.score.rescore",
        "train_reranker": "hardneg.score.train",
        "TeacherTrainingConfig": "hardneg.score.train",
        "render_html": "hardneg.report_html",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'hardneg' has no attribute {name!r}")
