"""BM25 candidates: bm25s' scores, indexed chunk by chunk (:mod:`hardneg.retrieve.bm25_index`)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from hardneg.candidates import Candidates, positive_score_matrix
from hardneg.errors import HardnegError
from hardneg.retrieve.bm25_index import BM25Index, build_bm25_index, load_bm25_index
from hardneg.retrieve.bm25_search import Backend, search_bm25
from hardneg.retrieve.bm25_tokens import query_terms
from hardneg.store import RunDir, fingerprint, texts_fingerprint

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

    def __init__(self, config: BM25Config | None = None, *, backend: Backend = "auto") -> None:
        """``backend``: how the search runs (``numpy``, ``numba`` or ``auto``: numba when it is installed).
        Every backend gives the same candidates bit for bit, so it is not part of :meth:`key`."""
        self.config = config or BM25Config()
        self.backend = backend
        self._stemmer = _load_stemmer(self.config.stemmer)
        _check_stopwords(self.config.stopwords)

    def key(self) -> str:
        return fingerprint("bm25", asdict(self.config))

    def index(self, passages, *, run_dir: RunDir | None = None, show_progress: bool = True) -> BM25Index:
        """The BM25 index of ``passages`` (any sequence of str), built chunk by chunk; with ``run_dir``, saved
        there memory-mapped and reused by later runs over the same passages and settings."""
        if run_dir is None:
            return build_bm25_index(passages, self.config, self._stemmer, show_progress=show_progress)
        directory = run_dir.bm25_index(fingerprint(self.key(), texts_fingerprint(passages)))
        index = load_bm25_index(directory)
        if index is None:
            index = build_bm25_index(passages, self.config, self._stemmer, directory=directory,
                                     show_progress=show_progress)
        return index

    def retrieve(self, data, depth: int, *, run_dir=None, show_progress: bool = True) -> Candidates:
        """Top-``depth`` BM25 documents per query; documents scoring 0 are left out.

        Positives' BM25 scores come from the same score vector, so margins cost nothing.
        """
        cfg = self.config
        index = self.index(data.corpus.passages, run_dir=run_dir, show_progress=show_progress)
        token_ids = query_terms(data.queries.texts, index.term_of_stem, cfg.stopwords, self._stemmer)
        doc_ids, scores, positive_flat = search_bm25(
            index, token_ids, depth, data.positives, backend=self.backend, show_progress=show_progress
        )
        positive_scores = positive_score_matrix(data.positives, positive_flat)
        return Candidates.from_single(self.name, data.queries.ids, doc_ids, scores, positive_scores)


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
