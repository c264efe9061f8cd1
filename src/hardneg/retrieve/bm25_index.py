"""A BM25 index built chunk by chunk, bit-identical to bm25s', saved and memory-mapped in the run directory.

bm25s keeps every document's tokens as Python lists and builds its score matrix through
intermediates of ~37 bytes per (term, document) posting; at 10 M documents that is ~20 GB.
Here the corpus is read in chunks (:mod:`hardneg.retrieve.bm25_tokens`), each chunk's
tokens become its (term, count) postings at once, and the score matrix is filled by
counting: pass 1 tokenises and counts document frequencies, pass 2 scores each chunk's
postings with bm25s' own idf and tf formulas (so every score has the same float32 bits)
and writes them into their columns. Memory: the index (8 bytes per posting + 8 per term),
the vocabulary, one chunk; with a run directory the chunks' postings wait on disk and the
index is written into memory-mapped files there, then searched memory-mapped.

The index offers what :func:`hardneg.retrieve.bm25_search.search_bm25` reads of a
``bm25s.BM25``: ``scores`` (``data``, ``indices``, ``indptr``, ``num_docs``) and
``nonoccurrence_array`` (BM25L / BM25+).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hardneg.retrieve.bm25_tokens import Bm25Tokenizer, chunks
from hardneg.store import integrity_record, load_npy, read_artifact, save_json_artifact, save_npy, write_json

CHUNK_DOCS = 20_000  # documents tokenised at a time
_NONOCCURRENCE_METHODS = ("bm25l", "bm25+")
_DELTA = 0.5  # bm25s' default delta (BM25L / BM25+)


@dataclass
class BM25Index:
    """A CSC score matrix (documents x terms) and its vocabulary.

    Attributes:
        scores: ``data`` (float32 per posting), ``indices`` (int32 document rows, ascending within a
            term), ``indptr`` (int64, per term), ``num_docs``.
        nonoccurrence_array: BM25L / BM25+'s per-term score of a document without the term; else None.
        term_of_stem: the vocabulary.
    """

    scores: dict
    nonoccurrence_array: np.ndarray | None
    term_of_stem: dict[str, int]


def build_bm25_index(
    passages: Iterable[str], config, stemmer, *, directory: Path | None = None,
    chunk_docs: int = CHUNK_DOCS, show_progress: bool = True,
) -> BM25Index:
    """Index ``passages`` (any iterable of str) with ``config`` (a ``BM25Config``); with ``directory``,
    the index is saved there (see :func:`load_bm25_index`) and returned memory-mapped."""
    tokenizer = Bm25Tokenizer(config.stopwords, stemmer)
    build = directory / "build" if directory is not None else None
    if build is not None:
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
    stored, lengths, df = [], [], np.zeros(0, dtype=np.int64)
    bar = tqdm(desc="BM25 index: tokenise", unit="doc", disable=not show_progress)
    for chunk in chunks(passages, chunk_docs):
        doc_lengths, terms = tokenizer.add_chunk(chunk)
        per_doc, post_terms, tf = count_postings(doc_lengths, terms)
        df = _add_counts(df, post_terms, len(tokenizer.stems))
        stored.append(_keep(build, len(stored), per_doc, post_terms, tf))
        lengths.append(doc_lengths)
        bar.update(len(chunk))
    bar.close()
    tokenizer.forget_words()
    doc_lengths = np.concatenate(lengths + [np.zeros(0, np.int64)])
    index = _fill_matrix(stored, doc_lengths, df, config, build, show_progress)
    index.term_of_stem = tokenizer.term_of_stem
    if directory is None:
        return index
    _save(directory, index, tokenizer.stems)
    shutil.rmtree(build, ignore_errors=True)
    return load_bm25_index(directory)


def count_postings(doc_lengths: np.ndarray, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A chunk's tokens as postings: per document its distinct terms (ascending) with their counts.

    Returns ``int32`` postings per document, ``int32`` terms and ``int32`` term frequencies.
    """
    doc = np.repeat(np.arange(len(doc_lengths), dtype=np.int64), doc_lengths)
    span = int(terms.max(initial=0)) + 1
    keys, tf = np.unique(doc * span + terms, return_counts=True)
    per_doc = np.bincount(keys // span, minlength=len(doc_lengths))
    return per_doc.astype(np.int32), (keys % span).astype(np.int32), tf.astype(np.int32)


def bm25_term_weights(df: np.ndarray, n_docs: int, avg_doc_len, config) -> tuple[np.ndarray, np.ndarray | None]:
    """float32 idf per term and, for BM25L / BM25+, the non-occurrence score: bm25s' formulas, computed
    once per distinct document frequency in float64 and stored as float32, as bm25s stores them."""
    from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

    idf_of, tfc_of = _select_idf_scorer(config.method), _select_tfc_scorer(config.method)
    distinct, where = np.unique(df, return_inverse=True)
    idf = np.array([idf_of(int(d), N=n_docs) if d else 0.0 for d in distinct.tolist()])
    if config.method not in _NONOCCURRENCE_METHODS:
        return idf[where].astype(np.float32), None
    tfc0 = tfc_of(tf_array=0, l_d=avg_doc_len, l_avg=avg_doc_len, k1=config.k1, b=config.b, delta=_DELTA)
    nonoccurrence = np.array([i * tfc0 if d else 0.0 for i, d in zip(idf.tolist(), distinct.tolist())])
    return idf[where].astype(np.float32), nonoccurrence[where].astype(np.float32)


def posting_scores(terms, tf, doc_len, avg_doc_len, idf, nonoccurrence, config) -> np.ndarray:
    """float32 score of each (term, document) posting: bm25s' ``idf * tfc`` (minus the non-occurrence
    score for BM25L / BM25+) with the same operands and dtypes, so the same bits."""
    from bm25s.scoring import _select_tfc_scorer

    tfc = _select_tfc_scorer(config.method)(
        tf_array=tf.astype(np.float32), l_d=doc_len, l_avg=avg_doc_len, k1=config.k1, b=config.b, delta=_DELTA
    )
    scores = idf[terms] * tfc
    if nonoccurrence is not None:
        scores -= nonoccurrence[terms]
    return scores.astype(np.float32)


def load_bm25_index(directory: Path) -> BM25Index | None:
    """The index :func:`build_bm25_index` saved in ``directory``, memory-mapped; None when absent or damaged."""
    manifest = read_artifact(directory / "index.json", lambda p: json.loads(p.read_text("utf-8")), what="BM25 index")
    if manifest is None:
        return None
    arrays = {name: load_npy(directory / f"{name}.npy", what="BM25 index", mmap=True)
              for name in ("data", "indices", "indptr")}
    stems = read_artifact(directory / "vocabulary.json", lambda p: json.loads(p.read_text("utf-8")),
                          what="BM25 vocabulary")
    nonoccurrence = None
    if manifest["nonoccurrence"]:
        nonoccurrence = load_npy(directory / "nonoccurrence.npy", what="BM25 index")
        if nonoccurrence is None:
            return None
    if stems is None or any(a is None for a in arrays.values()):
        return None
    scores = {**arrays, "num_docs": int(manifest["num_docs"])}
    return BM25Index(scores, nonoccurrence, {stem: term for term, stem in enumerate(stems)})


def _add_counts(df: np.ndarray, terms: np.ndarray, n_terms: int) -> np.ndarray:
    grown = np.bincount(terms, minlength=n_terms).astype(np.int64)
    grown[: len(df)] += df
    return grown


def _keep(build: Path | None, i: int, *arrays: np.ndarray):
    """A chunk's postings: held in memory, or on disk when there is a build folder."""
    if build is None:
        return arrays
    path = build / f"chunk{i:06d}.npz"
    np.savez(path, *arrays)
    return path


def _recall(stored) -> tuple[np.ndarray, ...]:
    if isinstance(stored, Path):
        with np.load(stored) as npz:
            return tuple(npz[f"arr_{i}"] for i in range(3))
    return stored


def _fill_matrix(stored, doc_lengths, df, config, build, show_progress) -> BM25Index:
    """Pass 2: score every chunk's postings and write them into their terms' columns, documents ascending."""
    n_docs = len(doc_lengths)
    avg_doc_len = doc_lengths.mean() if n_docs else np.float64(0)  # bm25s: the mean of an int64 array
    idf, nonoccurrence = bm25_term_weights(df, n_docs, avg_doc_len, config)
    indptr = np.concatenate(([0], np.cumsum(df))).astype(np.int64)
    data = _array(build, "data", np.float32, int(indptr[-1]))
    indices = _array(build, "indices", np.int32, int(indptr[-1]))
    cursor = indptr[:-1].copy()
    first_doc = 0
    for item in tqdm(stored, desc="BM25 index: score", unit="chunk", disable=not show_progress):
        per_doc, terms, tf = _recall(item)
        docs = first_doc + np.repeat(np.arange(len(per_doc), dtype=np.int64), per_doc)
        scores = posting_scores(terms, tf, doc_lengths[docs], avg_doc_len, idf, nonoccurrence, config)
        order = np.argsort(terms, kind="stable")  # postings come doc by doc, so rows stay ascending per term
        sorted_terms = terms[order]
        dest = cursor[sorted_terms] + np.arange(len(order)) - np.searchsorted(sorted_terms, sorted_terms)
        data[dest], indices[dest] = scores[order], docs[order]
        cursor += np.bincount(terms, minlength=len(cursor))
        first_doc += len(per_doc)
    scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}
    return BM25Index(scores, nonoccurrence, {})


def _array(build: Path | None, name: str, dtype, size: int) -> np.ndarray:
    if build is None:
        return np.empty(size, dtype=dtype)
    return np.lib.format.open_memmap(build / f"{name}.npy", mode="w+", dtype=dtype, shape=(size,))


def _save(directory: Path, index: BM25Index, stems: list[str]) -> None:
    """Move the memory-mapped arrays into place with integrity records; the manifest last marks it complete."""
    from hardneg.store import file_checksum

    s = index.scores
    for name in ("data", "indices"):
        s[name].flush()
        built, final = directory / "build" / f"{name}.npy", directory / f"{name}.npy"
        write_json(integrity_record(final), {"size": built.stat().st_size, "blake2b": file_checksum(built)})
        built.replace(final)
    save_npy(directory / "indptr.npy", s["indptr"])
    if index.nonoccurrence_array is not None:
        save_npy(directory / "nonoccurrence.npy", index.nonoccurrence_array)
    save_json_artifact(directory / "vocabulary.json", stems)
    save_json_artifact(directory / "index.json", {
        "num_docs": s["num_docs"], "postings": len(s["data"]), "vocabulary": len(stems),
        "nonoccurrence": index.nonoccurrence_array is not None,
    })
