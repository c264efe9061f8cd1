"""BM25 at scale on one machine: seconds and peak RSS per stage of hardneg's BM25 path on synthetic text.

Documents are synthetic: word ranks drawn from a Zipf law (exponent 1.3), 20-80 words each,
so the vocabulary grows with the corpus as real text's does; queries are 3-8 such words.
The stages are those of ``BM25Retriever.retrieve``: hold the texts as hardneg's Corpus
does, tokenise them (bm25s, English stemmer and stopwords), index, tokenise the queries,
search (top-100). Each stage's peak RSS is the process's high-water mark reset at the
stage's start; "index bytes" are bm25s' score matrix arrays.

    .venv/bin/python bench/bm25_memory.py --docs 1000000 --queries 10000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_texts(n: int, low: int, high: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(low, high + 1, n)
    ranks = rng.zipf(1.3, int(lengths.sum())) % 5_000_000
    vocabulary, word_of = np.unique(ranks, return_inverse=True)
    names = [f"w{rank:x}" for rank in vocabulary.tolist()]
    words = [names[i] for i in word_of.tolist()]
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    return [" ".join(words[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--backend", default="auto", choices=["auto", "numpy", "numba"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import bm25s
    import Stemmer

    from hardneg.retrieve.bm25_search import search_bm25

    stemmer = Stemmer.Stemmer("english")
    stages, state = [], {}

    def stage(name, fn):
        reset_peak()
        start = time.perf_counter()
        state[name] = fn()
        stages.append({"stage": name, "seconds": round(time.perf_counter() - start, 2),
                       "rss_after_mb": round(rss_mb("VmRSS")), "peak_mb": round(rss_mb("VmHWM"))})

    stage("texts", lambda: tuple(synthetic_texts(args.docs, 20, 80, seed=0)))
    stage("tokenize corpus", lambda: bm25s.tokenize(list(state["texts"]), stopwords="en", stemmer=stemmer,
                                                   show_progress=False))

    def build_index():
        index = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        index.index(state.pop("tokenize corpus"), show_progress=False)
        return index

    stage("index", build_index)
    index = state["index"]
    queries = synthetic_texts(args.queries, 3, 8, seed=1)
    stage("tokenize queries", lambda: [np.asarray(index.get_tokens_ids(t), dtype=np.int32) for t in bm25s.tokenize(
        queries, stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)])
    positives = [np.array([i % args.docs], dtype=np.int32) for i in range(args.queries)]
    stage("search", lambda: search_bm25(index, state["tokenize queries"], 100, positives, backend=args.backend,
                                        show_progress=False))
    s = index.scores
    summary = {"docs": args.docs, "queries": args.queries, "backend": args.backend,
               "postings": int(len(s["data"])), "vocabulary": int(len(s["indptr"]) - 1),
               "index_mb": round((s["data"].nbytes + s["indices"].nbytes + s["indptr"].nbytes) / 2**20),
               "search_queries_per_s": round(args.queries / stages[-1]["seconds"]), "stages": stages}
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"{args.docs:,} documents, {summary['postings']:,} postings, vocabulary {summary['vocabulary']:,}, "
          f"index {summary['index_mb']:,} MB; {args.queries:,} queries at {summary['search_queries_per_s']:,}/s "
          f"({args.backend})")
    print(f"{'stage':<18} {'seconds':>8} {'RSS after MB':>13} {'peak MB':>8}")
    for row in stages:
        print(f"{row['stage']:<18} {row['seconds']:>8.1f} {row['rss_after_mb']:>13,} {row['peak_mb']:>8,}")


if __name__ == "__main__":
    main()
