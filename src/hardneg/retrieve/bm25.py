"""BM25 candidates through bm25s."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from hardneg.candidates import EMPTY, Candidates, positive_score_matrix
from hardneg.errors import HardnegError
from hardneg.store import fingerprint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BM25Config:
    """BM25 settings (bm25s).

    Attributes:
        k1, b: the usual BM25 parameters.
        method: bm25s variant: ``lucene``, ``robertson``, ``atire``, ``bm25l``, ``bm25+``.
        stemmer: a PyStemmer language (``english``) or None for no stemming.
        stopwords: a bm25s stopword list name (``en``) or None to keep all words.
    """

    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    stemmer: str | None = "english"
    stopwords: str | None = "en"


class BM25Retriever:
    """Lexical candidates: cheap, and hard in the lexical sense."""

    name = "bm25"

    def __init__(self, config: BM25Config | None = None) -> None:
        self.config = config or BM25Config()
        self._stemmer = _load_stemmer(self.config.stemmer)
        _check_stopwords(self.config.stopwords)

    def key(self) -> str:
        return fingerprint("bm25", asdict(self.config))

    def retrieve(self, data, depth: int, *, run_dir=None, show_progress: bool = True) -> Candidates:
        """Top-``depth`` BM25 documents per query; documents scoring 0 are left out.

        Positives' BM25 scores come from the same score vector, so margins cost nothing.
        """
        import bm25s

        cfg = self.config
        corpus_tokens = bm25s.tokenize(
            list(data.corpus.passages), stopwords=cfg.stopwords, stemmer=self._stemmer, show_progress=show_progress
        )
        index = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method)
        index.index(corpus_tokens, show_progress=show_progress)
        query_tokens = bm25s.tokenize(
            list(data.queries.texts),
            stopwords=cfg.stopwords,
            stemmer=self._stemmer,
            return_ids=False,
            show_progress=False,
        )
        n_docs = len(data.corpus)
        k = min(depth, n_docs)
        doc_ids = np.full((len(query_tokens), depth), EMPTY, dtype=np.int32)
        scores = np.full((len(query_tokens), depth), np.nan, dtype=np.float32)
        positive_flat = []
        for row, tokens in enumerate(tqdm(query_tokens, desc="BM25 search", disable=not show_progress, unit="q")):
            all_scores = index.get_scores_from_ids(index.get_tokens_ids(tokens))
            top = top_k_descending(all_scores, k)
            top = top[all_scores[top] > 0]
            doc_ids[row, : len(top)] = top
            scores[row, : len(top)] = all_scores[top]
            positive_flat.append(all_scores[data.positives[row]])
        positive_scores = positive_score_matrix(
            data.positives, np.concatenate(positive_flat) if positive_flat else np.empty(0, np.float32)
        )
        return Candidates.from_single(self.name, data.queries.ids, doc_ids, scores, positive_scores)


def top_k_descending(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first; ties broken by lower index."""
    if k >= len(scores):
        part = np.arange(len(scores))
    else:
        part = np.argpartition(-scores, k - 1)[:k]
        # argpartition splits ties at the boundary arbitrarily; include every tie of the k-th score
        kth = scores[part].min()
        part = np.flatnonzero(scores >= kth)
    order = np.lexsort((part, -scores[part]))
    return part[order][:k]


def _load_stemmer(language: str | None):
    if language is None:
        return None
    try:
        import Stemmer
    except ImportError as exc:  # pragma: no cover - PyStemmer is a core dependency
        raise HardnegError("Stemming needs PyStemmer: pip install PyStemmer (or pass stemmer=None).") from exc
    try:
        return Stemmer.Stemmer(language)
    except KeyError as exc:
        raise HardnegError(
            f"Unknown stemmer language {language!r}; choose one of {sorted(Stemmer.algorithms())}."
        ) from exc


def _check_stopwords(name: str | None) -> None:
    """Refuse a stopword list bm25s does not have (it would fail only once retrieval starts)."""
    if name is None:
        return
    from bm25s.tokenization import _infer_stopwords

    try:
        _infer_stopwords(name)
    except ValueError as exc:
        raise HardnegError(
            f"Unknown stopword list {name!r}; use a bm25s list such as en, de, fr, es, it, pt, nl, ru, sv, no, da, "
            "tr, zh, ko, en_plus, or 'none' to keep every word."
        ) from exc
