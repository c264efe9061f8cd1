"""BM25 at scale on one machine: seconds and peak RSS per stage of hardneg's BM25 path on synthetic text.

Documents are synthetic: word ranks drawn from a Zipf law (exponent 1.3, modulo 5 M), 20-80
words each, so the vocabulary grows with the corpus as real text's does; queries are 3-8
such words. Texts are generated chunk by chunk, so the generator itself holds one chunk.

Ways:
  hardneg  ``BM25Retriever.index`` with a run directory (chunked tokenisation into int32
           postings, the score matrix filled by counting, saved and memory-mapped), then
           the query terms and the search over the memory-mapped index.
  bm25s    the path hardneg had before: ``bm25s.tokenize`` (Python lists of every token),
           ``bm25s.BM25.index``, the same search.

Seconds are wall time and CPU time (all threads of the process: on a shared machine the
CPU time is the steadier figure). Each stage's peak RSS is the process's high-water mark (VmHWM) reset at the stage's start;
it counts the memory-mapped index pages the stage touched (file-backed: the kernel can drop
them) as well as anonymous memory, which is reported separately after each stage.
``--stream`` feeds the texts as a generator instead of holding them (as a reader of an
Arrow/Parquet column in batches would); by default they are held as a tuple of str, as
hardneg's ``Corpus`` holds them.

    .venv/bin/python bench/bm25_memory.py --docs 1000000 --queries 10000 --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from peak_rss import reset_peak, status_mb  # bench/, first on the path when this script runs

CHUNK = 100_000
def synthetic_texts(n: int, low: int, high: int, seed: int):
    """``n`` texts of ``low``-``high`` Zipf words (``w`` + the word's rank in hex), made a chunk at a time."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        lengths = rng.integers(low, high + 1, min(CHUNK, n - start))
        words = [f"w{rank:x}" for rank in (rng.zipf(1.3, int(lengths.sum())) % 5_000_000).tolist()]
        bounds = np.concatenate(([0], np.cumsum(lengths))).tolist()
        yield from (" ".join(words[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))


def build_hardneg(texts, run_dir):
    from hardneg.retrieve.bm25 import BM25Retriever
    from hardneg.store import RunDir

    return BM25Retriever().index(texts, run_dir=RunDir(run_dir), show_progress=False)


def build_bm25s(texts, stemmer):
    import bm25s

    tokens = bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer, show_progress=False)
    index = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    index.index(tokens, show_progress=False)
    index.term_of_stem = index.vocab_dict
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--way", default="hardneg", choices=["hardneg", "bm25s"])
    parser.add_argument("--stream", action="store_true", help="texts as a generator, not held")
    parser.add_argument("--backend", default="auto", choices=["auto", "numpy", "numba"])
    parser.add_argument("--run-dir", type=Path, help="where hardneg's index goes (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import Stemmer

    from hardneg.retrieve.bm25_search import search_bm25
    from hardneg.retrieve.bm25_tokens import query_terms

    stemmer = Stemmer.Stemmer("english")
    stages, state = [], {}
    tmp = tempfile.TemporaryDirectory(dir=args.run_dir.parent if args.run_dir else None)
    run_dir = args.run_dir or Path(tmp.name)

    def stage(name, fn):
        reset_peak()
        start, cpu = time.perf_counter(), time.process_time()
        state[name] = fn()
        stages.append({"stage": name, "seconds": round(time.perf_counter() - start, 2),
                       "cpu_seconds": round(time.process_time() - cpu, 2),
                       "rss_after_mb": round(status_mb("VmRSS")), "anon_after_mb": round(status_mb("RssAnon")),
                       "peak_mb": round(status_mb("VmHWM"))})

    texts = synthetic_texts(args.docs, 20, 80, seed=0)
    if not args.stream:
        stage("texts", lambda: tuple(texts))
        texts = state["texts"]
    if args.way == "hardneg":
        stage("index", lambda: build_hardneg(texts, run_dir))
    else:
        stage("index", lambda: build_bm25s(texts, stemmer))
    index = state["index"]
    queries = list(synthetic_texts(args.queries, 3, 8, seed=1))
    stage("tokenize queries", lambda: query_terms(queries, index.term_of_stem, "en", stemmer) if args.way == "hardneg"
          else [np.asarray(index.get_tokens_ids(t), dtype=np.int32) for t in __import__("bm25s").tokenize(
              queries, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)])
    positives = [np.array([i % args.docs], dtype=np.int32) for i in range(args.queries)]
    stage("search", lambda: search_bm25(index, state["tokenize queries"], 100, positives, backend=args.backend,
                                        show_progress=False))
    s = index.scores
    summary = {"docs": args.docs, "queries": args.queries, "way": args.way, "stream": args.stream,
               "backend": args.backend, "postings": int(len(s["data"])), "vocabulary": int(len(s["indptr"]) - 1),
               "index_mb": round((s["data"].nbytes + s["indices"].nbytes + s["indptr"].nbytes) / 2**20),
               "search_queries_per_s": round(args.queries / stages[-1]["seconds"]), "stages": stages,
               "result_digest": int(np.asarray(state["search"][0], dtype=np.int64).sum()),
               "score_digest": float(np.nansum(state["search"][1], dtype=np.float64))}
    tmp.cleanup()
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"{args.docs:,} documents ({args.way}), {summary['postings']:,} postings, vocabulary "
          f"{summary['vocabulary']:,}, index {summary['index_mb']:,} MB; {args.queries:,} queries at "
          f"{summary['search_queries_per_s']:,}/s ({args.backend})")
    print(f"{'stage':<18} {'seconds':>8} {'CPU s':>7} {'RSS after MB':>13} {'anon after MB':>14} {'peak MB':>8}")
    for row in stages:
        print(f"{row['stage']:<18} {row['seconds']:>8.1f} {row['cpu_seconds']:>7.1f} {row['rss_after_mb']:>13,} "
              f"{row['anon_after_mb']:>14,} {row['peak_mb']:>8,}")


if __name__ == "__main__":
    main()
