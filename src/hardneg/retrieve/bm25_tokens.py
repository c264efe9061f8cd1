"""bm25s' tokenisation, straight into int32 term ids, a chunk of texts at a time.

The tokens are exactly ``bm25s.tokenize``'s: the lower-cased text's ``\\w\\w+`` words,
stopwords left out, then stemmed. Only the term ids are kept, as one ``int32`` array per
chunk: no Python list of tokens outlives its chunk. The vocabulary (stem -> term id, in
order of first appearance) and a cache of each distinct word's term id grow with the
corpus's distinct words, not with its length.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence

import numpy as np

_WORDS = re.compile(r"(?u)\b\w\w+\b").findall  # bm25s' default token pattern
_STOPWORD = -1


class Bm25Tokenizer:
    """Turns texts into term ids of one growing vocabulary.

    Args:
        stopwords: a bm25s stopword list name (``en``) or None to keep every word.
        stemmer: a PyStemmer ``Stemmer`` (anything with ``stemWords``) or None.
    """

    def __init__(self, stopwords: str | None, stemmer) -> None:
        from bm25s.tokenization import _infer_stopwords

        self._stopwords = frozenset(_infer_stopwords(stopwords))
        self._stem = stemmer.stemWords if stemmer is not None else list
        self._term_of_word: dict[str, int] = dict.fromkeys(self._stopwords, _STOPWORD)
        self.stems: list[str] = []  # term id -> stem
        self.term_of_stem: dict[str, int] = {}

    def add_chunk(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenise ``texts``, adding their new stems to the vocabulary.

        Returns:
            ``int64[len(texts)]`` tokens per text (after stopwords) and the ``int32`` term ids of
            all their tokens, text after text, each in text order.
        """
        words = [_WORDS(text.lower()) for text in texts]
        flat = list(itertools.chain.from_iterable(words))
        known = self._term_of_word
        new = [word for word in dict.fromkeys(flat) if word not in known]
        for word, stem in zip(new, self._stem(new)):
            known[word] = self._term_of(stem)
        terms = np.fromiter(map(known.__getitem__, flat), dtype=np.int32, count=len(flat))
        text_of_token = np.repeat(np.arange(len(words)), [len(w) for w in words])
        kept = terms != _STOPWORD
        return np.bincount(text_of_token[kept], minlength=len(words)), terms[kept]

    def _term_of(self, stem: str) -> int:
        term = self.term_of_stem.get(stem)
        if term is None:
            term = self.term_of_stem[stem] = len(self.stems)
            self.stems.append(stem)
        return term

    def forget_words(self) -> None:
        """Drop the word cache once the corpus is tokenised (queries go through :func:`query_terms`)."""
        self._term_of_word = dict.fromkeys(self._stopwords, _STOPWORD)


def query_terms(
    texts: Iterable[str], term_of_stem: dict[str, int], stopwords: str | None, stemmer
) -> list[np.ndarray]:
    """Per query, the ``int32`` term ids of its tokens in query order; stems the corpus never had are
    left out (as ``bm25s.BM25.get_tokens_ids`` does)."""
    from bm25s.tokenization import _infer_stopwords

    stop = frozenset(_infer_stopwords(stopwords))
    words = [[w for w in _WORDS(text.lower()) if w not in stop] for text in texts]
    distinct = list(dict.fromkeys(itertools.chain.from_iterable(words)))
    stems = stemmer.stemWords(distinct) if stemmer is not None else distinct
    term_of_word = {word: term_of_stem.get(stem, _STOPWORD) for word, stem in zip(distinct, stems)}
    out = []
    for query in words:
        terms = np.fromiter(map(term_of_word.__getitem__, query), dtype=np.int32, count=len(query))
        out.append(terms[terms != _STOPWORD])
    return out


def chunks(texts: Iterable[str], size: int) -> Iterable[list[str]]:
    """``texts`` as consecutive lists of at most ``size`` (any iterable: a tuple, an Arrow column, a generator)."""
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
