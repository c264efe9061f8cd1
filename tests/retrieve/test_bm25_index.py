"""The chunked BM25 index against bm25s' own, term by term and bit for bit, in memory and memory-mapped."""

from __future__ import annotations

import numpy as np
import pytest

from hardneg.retrieve.bm25 import BM25Config, BM25Retriever, _load_stemmer
from hardneg.retrieve.bm25_index import build_bm25_index, count_postings, load_bm25_index
from hardneg.retrieve.bm25_tokens import Bm25Tokenizer, query_terms
from hardneg.store import RunDir

METHODS = ["lucene", "robertson", "atire", "bm25l", "bm25+"]

TEXTS = [
    "The running dogs ran; a dog runs!", "", "Cats and dogs, cats and DOGS.", "the of and", "x y z",
    "Über naïve café déjà-vu", "running runner runs ran", "dog dog dog dog dog", "A cat. A catalogue.",
    "café cafés Cafe", "numbers 42 and 4242 and 42", "dogs",
]


def bm25s_index(texts, config: BM25Config):
    import bm25s

    stemmer = _load_stemmer(config.stemmer)
    index = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
    index.index(bm25s.tokenize(texts, stopwords=config.stopwords, stemmer=stemmer, show_progress=False),
                show_progress=False)
    return index


def assert_same_matrix(ours, theirs) -> None:
    """Every term's column: the same document rows and the same float32 bits; the same non-occurrence scores."""
    assert ours.scores["num_docs"] == theirs.scores["num_docs"]
    their_vocab = {stem: term for stem, term in theirs.vocab_dict.items() if stem != ""}
    assert set(ours.term_of_stem) == set(their_vocab)
    o, t = ours.scores, theirs.scores
    for stem, term in ours.term_of_stem.items():
        other = their_vocab[stem]
        mine = slice(o["indptr"][term], o["indptr"][term + 1])
        theirs_ = slice(t["indptr"][other], t["indptr"][other + 1])
        np.testing.assert_array_equal(o["indices"][mine], t["indices"][theirs_])
        assert np.array_equal(o["data"][mine].view(np.uint32), t["data"][theirs_].view(np.uint32)), stem
        if theirs.nonoccurrence_array is not None:
            assert ours.nonoccurrence_array[term].view(np.uint32) == theirs.nonoccurrence_array[other].view(np.uint32)
    assert (ours.nonoccurrence_array is None) == (theirs.nonoccurrence_array is None)


def test_count_postings_by_hand():
    # three documents: [5, 2, 5], [], [2, 2, 7, 2]
    per_doc, terms, tf = count_postings(np.array([3, 0, 4]), np.array([5, 2, 5, 2, 2, 7, 2], dtype=np.int32))
    assert per_doc.tolist() == [2, 0, 2]
    assert terms.tolist() == [2, 5, 2, 7]
    assert tf.tolist() == [1, 2, 3, 1]


def test_tokenizer_gives_bm25s_tokens_chunk_after_chunk():
    import bm25s

    stemmer = _load_stemmer("english")
    expected = bm25s.tokenize(TEXTS, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
    tokenizer = Bm25Tokenizer("en", stemmer)
    got = []
    for start in range(0, len(TEXTS), 5):
        lengths, terms = tokenizer.add_chunk(TEXTS[start : start + 5])
        bounds = np.concatenate(([0], np.cumsum(lengths)))
        got += [[tokenizer.stems[t] for t in terms[a:b]] for a, b in zip(bounds[:-1], bounds[1:])]
    assert got == expected
    # queries: unknown stems dropped, the rest in query order, repeats kept
    assert [q.tolist() for q in query_terms(["dogs cats unicorns dog", "the"], tokenizer.term_of_stem, "en",
                                            stemmer)] == [[tokenizer.term_of_stem[s] for s in ("dog", "cat", "dog")], []]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chunk_docs", [1, 5, 1000])
def test_index_equals_bm25s_whatever_the_chunk(method, chunk_docs):
    config = BM25Config(method=method)
    ours = build_bm25_index(TEXTS, config, _load_stemmer(config.stemmer), chunk_docs=chunk_docs, show_progress=False)
    assert_same_matrix(ours, bm25s_index(TEXTS, config))


@pytest.mark.parametrize("method", ["lucene", "bm25+"])
def test_index_saved_and_memory_mapped_equals_bm25s(tmp_path, method, tiny_train):
    config = BM25Config(method=method, stemmer=None, stopwords=None)
    texts = list(tiny_train.corpus.passages)
    built = build_bm25_index(iter(texts), config, None, directory=tmp_path / "ix", chunk_docs=7, show_progress=False)
    assert isinstance(built.scores["data"], np.memmap)
    assert not (tmp_path / "ix" / "build").exists()  # the chunks' postings are gone once the index is written
    assert_same_matrix(built, bm25s_index(texts, config))
    assert_same_matrix(load_bm25_index(tmp_path / "ix"), bm25s_index(texts, config))


def test_retrieve_with_a_run_dir_reuses_its_index_and_finds_the_same(tmp_path, tiny_train, monkeypatch):
    from hardneg.retrieve import bm25 as bm25_module

    retriever = BM25Retriever(backend="numpy")
    plain = retriever.retrieve(tiny_train, 10, show_progress=False)
    first = retriever.retrieve(tiny_train, 10, run_dir=RunDir(tmp_path), show_progress=False)
    assert len(list((tmp_path / "bm25").glob("*/index.json"))) == 1

    def no_build(*args, **kwargs):
        raise AssertionError("the saved index should have been reused")

    monkeypatch.setattr(bm25_module, "build_bm25_index", no_build)
    again = retriever.retrieve(tiny_train, 10, run_dir=RunDir(tmp_path), show_progress=False)
    for found in (first, again):
        np.testing.assert_array_equal(found.doc_ids, plain.doc_ids)
        assert np.array_equal(found.scores.view(np.uint32), plain.scores.view(np.uint32))


def test_a_damaged_saved_index_is_built_again(tmp_path, tiny_train, caplog):
    retriever = BM25Retriever(backend="numpy")
    plain = retriever.retrieve(tiny_train, 10, show_progress=False)
    retriever.retrieve(tiny_train, 10, run_dir=RunDir(tmp_path), show_progress=False)
    (data_file,) = (tmp_path / "bm25").glob("*/data.npy")
    raw = bytearray(data_file.read_bytes())
    raw[-1] ^= 0xFF
    data_file.write_bytes(bytes(raw))
    again = retriever.retrieve(tiny_train, 10, run_dir=RunDir(tmp_path), show_progress=False)
    assert "damaged" in caplog.text
    assert np.array_equal(again.scores.view(np.uint32), plain.scores.view(np.uint32))
