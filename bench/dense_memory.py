"""Peak memory of each dense stage on synthetic embeddings, against the README's formulas.

Synthetic unit vectors (``--dim`` wide, from a fake encoder: no model) go through hardneg's
own code for each stage, each stage in a fresh process (so no stage inherits another's
freed-but-kept heap): encode (``cached_encode``: shards assembled into one float16 array,
saved, memory-mapped back), exact search (``search_sharded`` over the memory-mapped file
with the ``--memory-budget`` block sizes), an ``ivf-pq`` index built from the memory-mapped
file and searched, then select and export of the exact candidates. Per stage: the child's
RSS before the stage (imports, inputs loaded) and its peak (VmHWM), and the README
formula's prediction of the difference. Pages of the memory-mapped embeddings count in
VmHWM (they are page cache the kernel may drop); the formulas include what a stage maps.

    .venv/bin/python bench/dense_memory.py --docs 200000 --queries 5000
    .venv/bin/python bench/dense_memory.py --docs 800000 --queries 5000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peak_rss import polled_peak, reset_peak, status_mb  # bench/, first on the path when this script runs

MB = 2**20
STAGES = ("encode", "search-exact", "index-ivf-pq", "search-ivf-pq", "select", "export")

class FakeEncoder:
    """Unit vectors that depend on the text's number only ("doc 17"): no model."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def key(self) -> str:
        return f"bench-{self.dim}"

    def encode_documents(self, texts, show_progress=False):
        rows = np.array([int(t.split()[1]) for t in texts])
        out = np.empty((len(rows), self.dim), np.float32)
        for i, row in enumerate(rows):
            out[i] = np.random.default_rng(int(row)).standard_normal(self.dim, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    encode_queries = encode_documents


def run_stage(args) -> dict:
    """One stage in this (child) process: returns seconds, RSS before, peak, and the formula's prediction."""
    from hardneg.candidates import Candidates
    from hardneg.data.values import Corpus, Queries, RetrievalData
    from hardneg.export import export
    from hardneg.retrieve.dense import EncodeJob, cached_encode
    from hardneg.retrieve.memory_plan import block_plan, parse_bytes
    from hardneg.retrieve.search import IndexConfig, build_index, default_pq_m, search
    from hardneg.retrieve.sharded_search import search_sharded
    from hardneg.select import SelectionConfig, select_negatives
    from hardneg.store import RunDir
    from hardneg.text import text_keys

    n, q, d, k, work = args.docs, args.queries, args.dim, args.depth, Path(args.work)
    plan = block_plan(parse_bytes(args.memory_budget), n, d, 2, k)
    texts = [f"doc {i}" for i in range(n)]
    query_texts = [f"query {i}" for i in range(n, n + q)]
    run = RunDir(work / "run")
    job16 = EncodeJob(FakeEncoder(d), None, "float16")

    def encoded(texts, role, side):
        return cached_encode(job16, texts, role, run, plan.encode_shard, False, role, side=side)

    ids_file, scores_file = work / "ids.npy", work / "scores.npy"
    m, sample = default_pq_m(d), min(n, max(39 * args.nlist, 50_000))
    if args.stage == "encode":
        predicted = n * d * 2 + 2 * min(plan.encode_shard, n) * d * 4  # the mapped file's pages + a shard
        job = lambda: encoded(texts, "doc", "documents")  # noqa: E731
    else:
        docs = encoded(texts, "doc", "documents")  # memory-mapped from the run directory
        queries = encoded(query_texts, "query", "queries")
    if args.stage == "search-exact":
        predicted = min(plan.doc_shard, n) * d * 8 + n * d * 2 + plan.query_block * 16 * k * d + q * k * 40

        def job():
            ids, scores = search_sharded(docs, queries, k, shard_size=plan.doc_shard, block_size=plan.query_block,
                                         show_progress=False)
            np.save(ids_file, ids)
            np.save(scores_file, scores)
    elif args.stage == "index-ivf-pq":
        predicted = sample * d * 4 + n * (m + 8) + min(65536, n) * d * 4 + n * d * 2
        job = lambda: build_index(docs, IndexConfig(kind="ivf-pq", nlist=args.nlist))  # noqa: E731
    elif args.stage == "search-ivf-pq":
        index = build_index(docs, IndexConfig(kind="ivf-pq", nlist=args.nlist))
        predicted = q * k * 12
        job = lambda: search(index, queries, k, block_size=plan.query_block, show_progress=False)  # noqa: E731
    elif args.stage in ("select", "export"):
        corpus = Corpus(ids=[f"d{i}" for i in range(n)], titles=[""] * n, texts=texts)
        data = RetrievalData(corpus, Queries(ids=[f"q{i}" for i in range(q)], texts=query_texts),
                             [np.array([i % n], np.int32) for i in range(q)], [np.array([1], np.int32)] * q)
        cands = Candidates.from_single("dense", data.queries.ids, np.load(ids_file), np.load(scores_file),
                                       np.full((q, 1), 0.5, np.float32))
        keys = text_keys(corpus.passages)
        predicted = q * k * 18
        job = lambda: select_negatives(cands, data.positives, keys, SelectionConfig(num_negatives=3))  # noqa: E731
        if args.stage == "export":
            selection = job()
            predicted = q * 3 * 200
            job = lambda: export(data, selection, work / "out.jsonl", "triplet")  # noqa: E731
    before, anon_before = status_mb("VmRSS"), status_mb("RssAnon")
    reset_peak()
    t0 = time.perf_counter()
    with polled_peak("RssAnon") as anon:
        job()
    return {"stage": args.stage, "seconds": round(time.perf_counter() - t0, 1), "rss_before_mb": round(before),
            "peak_mb": round(status_mb("VmHWM")), "peak_beyond_before_mb": round(status_mb("VmHWM") - before),
            "predicted_beyond_before_mb": round(predicted / MB),
            "anon_peak_beyond_before_mb": round(anon["mb"] - anon_before)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--memory-budget", default="1GB")
    parser.add_argument("--nlist", type=int, default=256)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(run_stage(args)))
        return
    work = tempfile.mkdtemp(prefix="dense-memory-")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # FAISS's OpenMP barriers crawl on shared, busy cores
    rows = []
    for stage in STAGES:
        argv = [sys.executable, __file__, "--stage", stage, "--work", work] + [
            f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
            if name not in ("stage", "work")]
        out = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"docs": args.docs, "queries": args.queries, "dim": args.dim, "depth": args.depth,
                      "budget": args.memory_budget, "rows": rows}))


if __name__ == "__main__":
    main()
