"""IVF's default cell count past 1 M documents: ``4 sqrt(N)`` against a fixed cap, side by side.

Adding N documents to an IVF index assigns each to its nearest of nlist cells (N x nlist x dim
flops), so ``nlist = 4 sqrt(N)`` makes the index stage grow as N^1.5 (1.24 measured from 1 M to
8.8 M, bench/RESULTS.md). A fixed nlist keeps it linear; each query then scans the same share
of the corpus (nprobe / nlist) at every size, so its search grows linearly instead of as
sqrt(N). Recall is the open question: larger cells mean larger residuals for the product
quantiser to code. This measures both rules per corpus size with hardneg's own
``build_index`` / ``search`` (``ivf-pq``, nprobe 32): CPU seconds to build; per ``--fetch``
factor f, CPU seconds to search the queries for 100 f candidates and rescore them exactly;
and recall@100 of the best 100 against exact search on 1,000 queries.

Data: real all-MiniLM-L6-v2 embeddings of debian-desc full (51,797 documents, a ``.npy`` from a
run directory); each synthetic vector mixes a random real one with two of its ``--neighbours``
nearest (random convex weights), adds Gaussian noise (``--noise``: its expected length) and is
normalised: a corpus of any size that fills the real one's neighbourhoods instead of repeating
its points. Queries come from the same process with another seed. A proxy: real corpora of
millions have finer structure of their own, so read recall across rules, not as a promise.

    .venv/bin/python bench/ivf_nlist.py --embeddings RUN/embeddings/doc-....npy --docs 1000000 2000000 4000000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from ivf_quantizer import cpu_seconds  # bench/, first on the path when this script runs

RULES = {
    "4 sqrt(N)": lambda n: max(1, min(int(4 * np.sqrt(n)), n // 39)),
    "hardneg default": None,  # whatever hardneg.retrieve.search picks (nlist=None)
}


def neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """``int[n, k]`` each vector's ``k`` nearest others by inner product (exact, in blocks)."""
    out = np.empty((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), 4096):
        s = vectors[start : start + 4096] @ vectors.T
        s[np.arange(len(s)), np.arange(start, start + len(s))] = -np.inf
        out[start : start + len(s)] = np.argpartition(-s, k, axis=1)[:, :k]
    return out


def blended(real: np.ndarray, near: np.ndarray, n: int, noise: float, seed: int) -> np.ndarray:
    """``n`` unit vectors float16, each a random mix of a real vector and two of its neighbours
    (Dirichlet(1, 1, 1) weights: points fill the triangles of the real neighbour graph rather
    than repeating its points) plus Gaussian noise of expected length ``noise``."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float16)
    scale = noise / np.sqrt(real.shape[1])
    for start in range(0, n, 262_144):
        rows = min(262_144, n - start)
        i = rng.integers(0, len(real), rows)
        j, k = (near[i, rng.integers(0, near.shape[1], rows)] for _ in range(2))
        w = rng.dirichlet(np.ones(3), rows).astype(np.float32)
        x = w[:, :1] * real[i] + w[:, 1:2] * real[j] + w[:, 2:] * real[k]
        x += scale * rng.standard_normal(x.shape, dtype=np.float32)
        out[start : start + rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def measure(docs: np.ndarray, queries: np.ndarray, nlist: int | None, exact: np.ndarray,
            fetch: tuple[int, ...]) -> list[dict]:
    """One index, searched for ``100 * f`` candidates per query for each ``f`` in ``fetch``, each list
    rescored exactly and cut to its best 100 (hardneg rescores an approximate index's candidates);
    recall against ``exact``, the true top 100 of the first ``len(exact)`` queries."""
    from hardneg.retrieve.exact import exact_scores, order_by_score_then_id
    from hardneg.retrieve.recall import recall_against_exact
    from hardneg.retrieve.search import IndexConfig, build_index, search

    index_s, index = cpu_seconds(lambda: build_index(docs, IndexConfig(kind="ivf-pq", nlist=nlist)))
    rows = []
    for f in fetch:
        search_s, (found, _) = cpu_seconds(lambda f=f: search(index, queries, 100 * f, show_progress=False))
        rescore_s, (best, _) = cpu_seconds(
            lambda found=found: order_by_score_then_id(found, exact_scores(queries, docs, found)))
        rows.append({"nlist": int(index.nlist), "fetch": f, "index_cpu_s": round(index_s, 1),
                     "search_cpu_s": round(search_s, 1), "rescore_cpu_s": round(rescore_s, 1),
                     "search_ms_per_query": round(1000 * (search_s + rescore_s) / len(queries), 3),
                     "recall_at_100": round(recall_against_exact(best[: len(exact), :100], exact), 4)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", required=True, help="a [n, dim] .npy of real document embeddings")
    parser.add_argument("--docs", type=int, nargs="+", default=[1_000_000, 2_000_000, 4_000_000])
    parser.add_argument("--queries", type=int, default=10_000, help="queries searched (timed)")
    parser.add_argument("--recall-queries", type=int, default=1_000)
    parser.add_argument("--neighbours", type=int, default=20, help="a real vector mixes with two of its this many nearest")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--fetch", type=int, nargs="+", default=[1, 2],
                        help="search 100 x this many candidates, rescore them exactly, keep the best 100")
    parser.add_argument("--json", help="append one JSON line per (size, rule) here")
    args = parser.parse_args()
    from hardneg.retrieve.sharded_search import search_sharded

    real = np.load(args.embeddings).astype(np.float32)
    near = neighbours(real, args.neighbours)
    queries = blended(real, near, args.queries, args.noise, seed=1)
    print(f"{len(real):,} real vectors of {real.shape[1]}, {args.neighbours} neighbours each, noise {args.noise}, "
          f"{args.queries:,} queries")
    print("| documents | rule | nlist | index CPU s | candidates fetched | search + rescoring CPU s (ms a query) "
          "| recall@100 |")
    print("|---|---|---|---|---|---|---|")
    for n in args.docs:
        docs = blended(real, near, n, args.noise, seed=0)
        exact, _ = search_sharded(docs, queries[: args.recall_queries].astype(np.float32), 100, shard_size=262_144,
                                  block_size=1024, show_progress=False)  # the same truth for both rules
        rows = {}
        for rule, nlist_of in RULES.items():
            rows[rule] = measure(docs, queries, nlist_of(n) if nlist_of else None, exact, tuple(args.fetch))
            for r in rows[rule]:
                print(f"| {n:,} | {rule} | {r['nlist']:,} | {r['index_cpu_s']} | {100 * r['fetch']} "
                      f"| {r['search_cpu_s'] + r['rescore_cpu_s']:.1f} ({r['search_ms_per_query']}) "
                      f"| {r['recall_at_100']} |", flush=True)
                if args.json:
                    with open(args.json, "a") as fh:
                        fh.write(json.dumps({"docs": n, "rule": rule, "noise": args.noise,
                                             "neighbours": args.neighbours, **r,
                                             "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}) + "\n")
        old, new = rows["4 sqrt(N)"][0], rows["hardneg default"][0]
        print(f"  {n:,}: default / 4 sqrt(N): index {new['index_cpu_s'] / old['index_cpu_s']:.2f}x, "
              f"search {new['search_cpu_s'] / old['search_cpu_s']:.2f}x", flush=True)
        del docs


if __name__ == "__main__":
    main()
