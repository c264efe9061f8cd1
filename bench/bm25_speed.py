"""BM25 search speed: hardneg's search (numpy and numba) vs its old per-query loop vs bm25s' own retrieve.

"scipy-block" is the batched design measured and not taken: a block of 256 queries as one
scipy sparse product with the term-score matrix, top-k per row of the sparse result.

Corpus: debian-desc full (51,797 package descriptions) twice, the second copy with every
fifth word dropped, so ~100 k distinct documents; queries: the package
synopses. Each way of searching runs in its own child process on the same index settings
(lucene, k1=1.5, b=0.75, English stemmer and stopwords), top-100 per query. Timed: search
only (tokenising and indexing are not timed); numba code is compiled before the
clock starts. The hardneg ways search hardneg's own index (``BM25Retriever.index``:
built chunk by chunk, saved in a run directory, memory-mapped); the others bm25s'.
Peak RSS: the child's high-water mark, reset once the index is built: the
search's peak, next to the RSS it started from (index, texts, interpreter).

    .venv/bin/python bench/bm25_speed.py                # 20,000 queries
    .venv/bin/python bench/bm25_speed.py --queries 51797 --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peak_rss import reset_peak, status_mb  # bench/, first on the path when this script runs

DATA = Path("/work/shared/data/debian-desc/full")
WAYS = ["old-loop", "hardneg-numpy", "hardneg-numba", "scipy-block", "bm25s-numpy", "bm25s-numba"]
DEPTH = 100


def corpus_texts() -> list[str]:
    texts = [json.loads(line)["text"] for line in (DATA / "corpus.jsonl").open()]
    return texts + [" ".join(w for i, w in enumerate(t.split()) if i % 5 != 4) for t in texts]


def query_texts(n: int) -> list[str]:
    return [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open()][:n]


def old_loop(index, token_ids, depth):
    """hardneg's BM25 search before the batched one, verbatim: one dense score vector per query."""
    k = min(depth, index.scores["num_docs"])
    doc_ids = np.full((len(token_ids), depth), -1, dtype=np.int32)
    scores = np.full((len(token_ids), depth), np.nan, dtype=np.float32)
    for row, tokens in enumerate(token_ids):
        all_scores = index.get_scores_from_ids(list(tokens))
        if k >= len(all_scores):
            part = np.arange(len(all_scores))
        else:
            part = np.argpartition(-all_scores, k - 1)[:k]
            part = np.flatnonzero(all_scores >= all_scores[part].min())
        top = part[np.lexsort((part, -all_scores[part]))][:k]
        top = top[all_scores[top] > 0]
        doc_ids[row, : len(top)] = top
        scores[row, : len(top)] = all_scores[top]
    return doc_ids, scores


def scipy_block(index, token_ids, depth, block=256):
    """The design hardneg measured and did not take: a block of queries as one sparse product
    (queries x terms) @ (terms x docs) with scipy, then top-k per row of the sparse result.
    Scores equal bm25s' bit for bit (one 1.0 per token, in query order)."""
    import scipy.sparse as sp

    from hardneg.retrieve.bm25_search import top_k_by_score_then_id

    s = index.scores
    terms = sp.csr_matrix((s["data"], s["indices"], s["indptr"]), shape=(len(s["indptr"]) - 1, s["num_docs"]))
    k = min(depth, s["num_docs"])
    doc_ids = np.full((len(token_ids), depth), -1, dtype=np.int32)
    scores = np.full((len(token_ids), depth), np.nan, dtype=np.float32)
    for start in range(0, len(token_ids), block):
        part = token_ids[start : start + block]
        indptr = np.concatenate(([0], np.cumsum([len(q) for q in part])))
        indices = np.concatenate(list(part) + [np.empty(0, np.int32)]).astype(np.int32)
        queries = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(part), terms.shape[0]))
        product = queries @ terms  # (block, docs), sparse: only documents sharing a term
        for row in range(len(part)):
            docs = product.indices[product.indptr[row] : product.indptr[row + 1]]
            vals = product.data[product.indptr[row] : product.indptr[row + 1]]
            docs, vals = docs[vals > 0], vals[vals > 0]
            top = top_k_by_score_then_id(docs, vals, k)
            doc_ids[start + row, : len(top)], scores[start + row, : len(top)] = docs[top], vals[top]
    return doc_ids, scores
def run_one(way: str, n_queries: int, out: Path) -> dict:
    import bm25s
    import Stemmer

    from hardneg.retrieve.bm25_search import search_bm25

    stemmer = Stemmer.Stemmer("english")
    if way.startswith("hardneg"):  # hardneg's own index, saved in a run directory and searched memory-mapped
        from hardneg.retrieve.bm25 import BM25Retriever
        from hardneg.retrieve.bm25_tokens import query_terms
        from hardneg.store import RunDir

        index = BM25Retriever().index(corpus_texts(), run_dir=RunDir(out.parent / f"run-{way}"), show_progress=False)
        token_ids = query_terms(query_texts(n_queries), index.term_of_stem, "en", stemmer)
    else:
        backend = "numba" if way == "bm25s-numba" else "numpy"
        index = bm25s.BM25(k1=1.5, b=0.75, method="lucene", backend=backend)
        index.index(bm25s.tokenize(corpus_texts(), stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
        tokens = bm25s.tokenize(query_texts(n_queries), stopwords="en", stemmer=stemmer, return_ids=False,
                                show_progress=False)
        token_ids = [np.asarray(index.get_tokens_ids(t), dtype=np.int32) for t in tokens]
    no_positives = [np.empty(0, np.int32)] * len(token_ids)
    index_rss = status_mb("VmHWM")

    def search(ids):
        if way == "old-loop":
            return old_loop(index, ids, DEPTH)
        if way == "scipy-block":
            return scipy_block(index, ids, DEPTH)
        if way.startswith("hardneg"):
            return search_bm25(index, ids, DEPTH, no_positives[: len(ids)], backend=way.split("-")[1],
                               show_progress=False)[:2]
        # bm25s' own retrieve, as a user calls it (ids in, top-k out, its own tie order)
        names = [[t for t in q] for q in tokens[: len(ids)]]
        docs, scores = index.retrieve(names, k=DEPTH, show_progress=False, n_threads=-1 if way == "bm25s-numba" else 0,
                                      backend_selection="numba" if way == "bm25s-numba" else "numpy")
        return docs.astype(np.int32), scores.astype(np.float32)

    search(token_ids[:50])  # compile (numba) / warm up, outside the clock
    reset_peak()
    before_rss = status_mb("VmHWM")  # the high-water mark starts again from the current RSS
    start = time.perf_counter()
    doc_ids, scores = search(token_ids)
    seconds = time.perf_counter() - start
    np.savez(out, doc_ids=doc_ids, scores=scores)
    return {"way": way, "n_docs": int(index.scores["num_docs"]), "queries": len(token_ids), "seconds": seconds,
            "queries_per_s": len(token_ids) / seconds, "index_peak_rss_mb": index_rss,
            "rss_before_search_mb": before_rss, "search_peak_rss_mb": status_mb("VmHWM")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--ways", nargs="+", default=WAYS, choices=WAYS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.queries, args.out)))
        return
    try:
        import numba  # noqa: F401
    except ImportError:
        print("numba is not installed: the numba rows are skipped (pip install 'hardneg[fast]').", file=sys.stderr)
        args.ways = [w for w in args.ways if not w.endswith("numba")]
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for way in args.ways:
            out = Path(tmp) / f"{way}.npz"
            child = subprocess.run([sys.executable, __file__, "--one", way, "--queries", str(args.queries),
                                    "--out", str(out)], check=True, capture_output=True, text=True)
            rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
            results[way] = np.load(out)
    reference = results.get("old-loop")
    for row in rows:
        if reference is not None and (row["way"].startswith("hardneg") or row["way"] == "scipy-block"):
            got = results[row["way"]]
            row["identical_to_old_loop"] = bool(np.array_equal(got["doc_ids"], reference["doc_ids"]) and np.array_equal(
                got["scores"].view(np.uint32), reference["scores"].view(np.uint32)))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    base = {r["way"]: r for r in rows}
    old = base.get("old-loop")
    print(f"{rows[0]['n_docs']:,} documents, {rows[0]['queries']:,} queries, top-{DEPTH}")
    print(f"{'way':<15} {'queries/s':>10} {'x old loop':>11} {'RSS before MB':>14} {'search peak MB':>15} "
          f"{'peak x old':>11} {'identical':>10}")
    for r in rows:
        ratio = r["queries_per_s"] / old["queries_per_s"] if old else float("nan")
        rss_ratio = r["search_peak_rss_mb"] / old["search_peak_rss_mb"] if old else float("nan")
        print(f"{r['way']:<15} {r['queries_per_s']:>10,.0f} {ratio:>11.2f} {r['rss_before_search_mb']:>14,.0f} "
              f"{r['search_peak_rss_mb']:>15,.0f} {rss_ratio:>11.2f} {str(r.get('identical_to_old_loop', '')):>10}")


if __name__ == "__main__":
    main()
